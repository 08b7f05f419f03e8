"""The compile policy: which Sparse-IFT member, at which sparsity, with which options.

One frozen dataclass with a canonical string form, e.g. ``"parallel:0.75"`` or
``"factorized:0.9,dist=erk,iso=nominal"``. ``Policy.parse(str(p)) == p`` always holds:
``str`` writes the member, the sparsity and every option that differs from its default,
in a fixed order. Unknown keys and bad values raise :class:`PolicyError` (a ValueError)
listing what is allowed, in the spirit of TVM's PassContext config keys.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field, fields

from siftc.core.errors import PolicyError
from siftc.core.patterns import parse_pattern

# Members of the Sparse-IFT family that substitute knows (docs/method.md, "The family").
# "sparse" is the static-sparse baseline at the original shape; "dense" changes nothing.
MEMBERS = ("dense", "sparse", "wide", "parallel", "factorized", "doped")

_CHOICES = {
    "dist": ("uniform", "erk"),       # layer density distribution (docs/method.md, "Layer densities")
    "iso": ("exact", "nominal"),      # solve densities for iso-FLOP, or keep the nominal sparsity
    "init": ("kaiming", "scaled", "reference"),  # scaled: kept weights x 1/sqrt(density) (docs/method.md,
                                      # "Pilot lessons"); reference: Kaiming fan_out and a zero last norm
                                      # of every plain residual branch, as the authors' code
    "stem": ("dense", "sparse"),      # the first weight op on the input path
    "head": ("dense", "sparse"),      # the last weight op on the output path
    "dst": ("static", "set", "rigl"), # mask updates during training (siftc.DST)
    "drop_schedule": ("cosine", "constant"),  # drop-fraction schedule of SET/RigL (not the lr schedule)
    "width": ("nominal", "reference"),   # Sparse Wide factor: sqrt(1/(1-s)), or the reference
                                         # code's int(w * sqrt(round(1/(1-s))))
    "capture": ("auto", "fx", "export"),  # auto: torch.fx, falling back to torch.export when fx fails
    "grouped": ("dense", "apply"),        # grouped/depthwise convs: left dense, or the member per group
    "combine": ("sum", "mean"),           # Sparse Parallel: branch outputs summed (docs/method.md) or averaged
    "count": ("matmul", "all", "layers"),  # which FLOPs iso=exact equalises: matmul-class (FlopCounterMode's),
                                           # every op, or the authors' counter's (conv/linear/matmul, norms, pooling)
    "buffers": ("pad", "keep", "refuse"),  # Sparse Wide: a buffer on a widened group keeps its values and is
                                           # padded, keeps its group's width, or is refused
    "shortcut": ("sparse", "member", "dense"),  # a residual shortcut projection under a per-layer member
    "parallel_form": ("imagenet", "cifar", "siftc"),  # Sparse Parallel's branches (docs/method.md, "The family")
    "lowrank": ("dense", "sparse"),       # Sparse Doped's U and V: dense (the paper), masked (the authors' code)
    "drop_round": ("round", "floor"),     # SET/RigL drop count: rounded, or floored (the authors' code)
    "kernels": ("dense", "auto", "csr", "sparseprop"),  # training: masked linears dense-with-zeros, or sparse
                                                        # kernels where measured faster (siftc/core/train_kernels.py)
}



def _key_text(name: str, value) -> str:
    """One ``key=value`` of a policy string (floats by repr, so they parse back to the same value)."""
    return f"{name}={value!r}" if isinstance(value, float) else f"{name}={value}"

@dataclass(frozen=True)
class Policy:
    member: str = "dense"       # which Sparse-IFT member substitute applies
    sparsity: float = 0.0       # nominal sparsity s of the sparse weights, 0 <= s < 1
    dist: str = "uniform"       # uniform | erk layer densities
    iso: str = "exact"          # exact: solve densities so sparse FLOPs == dense budget
    tol: float = 0.005          # iso-FLOP tolerance checked by verify (relative)
    init: str = "kaiming"       # weight init of sparse weights on their full dense shape
    seed: int = 0               # seed of mask and weight initialisation
    stem: str = "dense"         # keep the stem dense (docs/method.md) or sparsify it too
    head: str = "dense"         # keep the head dense (docs/method.md) or sparsify it too
    dst: str = "static"         # siftc.DST algorithm: static | set | rigl
    dT: int = 100               # steps between mask updates (docs/method.md: 100 ResNet, 500 GPT)
    drop: float = 0.3           # initial drop fraction of SET/RigL
    end: float = 0.75           # fraction of total steps after which masks stop moving
    drop_schedule: str = "cosine"  # SET/RigL drop fraction over steps: cosine | constant
    width: str = "nominal"      # Sparse Wide width rule: nominal | reference
    round: int = 8              # Sparse Wide: round widths to a multiple of this (1: no rounding)
    pattern: str = "none"       # mask structure: none | block:B | N:M (siftc/core/patterns.py)
    capture: str = "auto"       # how the model is captured: auto | fx | export (passes/capture.py)
    grouped: str = "dense"      # grouped convs under parallel/factorized/doped/sparse: dense | apply
    combine: str = "sum"        # parallel: sum (docs/method.md) | mean (1/k x sum: keeps the layer's output scale)
    include: str = "*"          # module-path globs ('|'-separated) a member may rewrite
    exclude: str = ""           # module-path globs ('|'-separated) left dense, e.g. *.attn.*
    count: str = "matmul"       # iso=exact equalises matmul-class FLOPs | all FLOPs | the authors' layers
    buffers: str = "pad"        # wide: buffers on widened groups: pad (values in place) | keep | refuse
    shortcut: str = "sparse"    # residual shortcut projections: one sparse layer | the member | dense
    parallel_form: str = "cifar"  # parallel: sum_j N_j(W_j x) replacing the layer's norm (the authors' CIFAR
                                  # code) | with an act per branch (imagenet: the paper's text; trained to
                                  # chance on CIFAR ResNet-18, docs/results.md) | siftc's form before 2026-12
    lowrank: str = "dense"      # doped: U and V dense (iso-FLOP) | sparse (the authors' code, far under budget)
    drop_round: str = "round"   # SET/RigL: drop count rounded | floored (the authors' code)
    # the preset the policy was written with (display only: its keys are expanded at parse time,
    # so equality and the string form go by the keys themselves)
    preset: str = field(default="none", compare=False)
    kernels: str = "dense"      # training kernels of masked linears: dense | auto | csr | sparseprop
                                # (dst=static: from compile on; set/rigl: from their end fraction, by DST)

    def __post_init__(self):
        if self.member not in MEMBERS:
            raise PolicyError(f"unknown member {self.member!r}; allowed members: {', '.join(MEMBERS)}")
        if self.preset not in PRESETS:
            raise PolicyError(f"policy key preset={self.preset!r} is not allowed; allowed values: {', '.join(PRESETS)}")
        # Policy(..., preset=...) built directly: the preset's keys where a field was left at its
        # default (parse applies them itself, so that a key written out at its default wins)
        defaults = {f.name: f.default for f in fields(self)}
        for key, value in PRESETS[self.preset](self.member).items():
            if getattr(self, key) == defaults[key]:
                object.__setattr__(self, key, value)
        _check_number("sparsity", self.sparsity, 0.0, 1.0, "0 <= sparsity < 1")
        if self.member == "dense" and self.sparsity != 0.0:
            raise PolicyError("member 'dense' takes no sparsity; write 'dense' alone")
        if self.member not in ("dense",) and self.sparsity == 0.0:
            raise PolicyError(f"member {self.member!r} needs a sparsity 0 < s < 1, e.g. '{self.member}:0.75'")
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise PolicyError(f"policy key {key}={getattr(self, key)!r} is not allowed; "
                                  f"allowed values: {', '.join(allowed)}")
        _check_number("tol", self.tol, 0.0, 1.0, "0 < tol < 1")
        if self.tol == 0.0:
            raise PolicyError("policy key tol must be > 0 (a relative tolerance, e.g. tol=0.005)")
        if not isinstance(self.dT, int) or isinstance(self.dT, bool) or self.dT < 1:
            raise PolicyError(f"policy key dT={self.dT!r} must be an integer >= 1 (steps between mask updates)")
        _check_number("drop", self.drop, 0.0, 1.0, "0 <= drop < 1")
        _check_number("end", self.end, 0.0, 1.0 + 1e-12, "0 <= end <= 1")
        if not isinstance(self.round, int) or isinstance(self.round, bool) or self.round < 1:
            raise PolicyError(f"policy key round={self.round!r} must be an integer >= 1 (round=1 turns rounding off)")
        try:
            parse_pattern(self.pattern)
        except ValueError as e:
            raise PolicyError(f"policy key {e}") from None
        for key in ("include", "exclude"):
            globs = getattr(self, key)
            if not isinstance(globs, str) or any(not g.strip() for g in globs.split("|")) and globs:
                raise PolicyError(f"policy key {key}={globs!r} must be module-path globs separated by '|', "
                                  f"e.g. {key}=*.attn.*|*.mlp.c_proj")
        if not self.include:
            raise PolicyError("policy key include= is empty; leave it out (default '*': every module)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise PolicyError(f"policy key seed={self.seed!r} must be a non-negative integer")

    # ------------------------------------------------------------------ string form
    @classmethod
    def parse(cls, text: "str | Policy") -> "Policy":
        """Parse ``member[:sparsity][,key=value]*``; a Policy is returned unchanged."""
        if isinstance(text, Policy):
            return text
        if not isinstance(text, str) or not text.strip():
            raise PolicyError(f"policy must be a string like 'parallel:0.75' or a siftc.Policy, got {text!r}")
        head, *opts = [part.strip() for part in text.strip().split(",")]
        member, _, sparsity_text = head.partition(":")
        kwargs: dict = {"member": member.strip()}
        if sparsity_text:
            kwargs["sparsity"] = _parse_float("sparsity", sparsity_text)
        known = {f.name: f for f in fields(cls) if f.name not in ("member", "sparsity")}
        explicit: dict = {}
        for opt in opts:
            key, eq, value = opt.partition("=")
            key = key.strip()
            if not eq:
                raise PolicyError(f"policy option {opt!r} must be key=value; allowed keys: {', '.join(known)}")
            if key not in known:
                raise PolicyError(f"unknown policy key {key!r}; allowed keys: {', '.join(known)}")
            if key in explicit:
                raise PolicyError(f"policy key {key!r} given twice")
            explicit[key] = _convert(key, known[key].type, value.strip())
        preset = explicit.get("preset", "none")
        if preset not in PRESETS:
            raise PolicyError(f"policy key preset={preset!r} is not allowed; allowed values: {', '.join(PRESETS)}")
        # a preset's keys first, then the keys written out (they override it)
        explicit.pop("preset", None)
        policy = cls(**kwargs, **{**PRESETS[preset](kwargs["member"]), **explicit})
        object.__setattr__(policy, "preset", preset)
        return policy

    def key_values(self) -> dict:
        """Every policy key and its value (member, sparsity and preset aside), defaults included."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("member", "sparsity", "preset")}

    @classmethod
    def from_keys(cls, head: str, keys: dict) -> "Policy":
        """``head`` (``parallel:0.75``) with every key of ``keys`` written out, parsed (and checked)
        as any policy string: what key_values gives back, independent of the defaults of the day."""
        return cls.parse(",".join([head, *(_key_text(k, v) for k, v in keys.items())]))

    def __str__(self) -> str:
        text = self.member if self.member == "dense" else f"{self.member}:{self.sparsity!r}"
        defaults = {f.name: f.default for f in fields(self)}
        return text + "".join("," + _key_text(k, v) for k, v in self.key_values().items() if v != defaults[k])

    def replace(self, **changes) -> "Policy":
        """A copy with ``changes``; the other keys stay as they are (a preset is not re-applied)."""
        policy = dataclasses.replace(self, **{"preset": "none", **changes})
        object.__setattr__(policy, "preset", changes.get("preset", self.preset))
        return policy

    @property
    def density(self) -> float:
        return 1.0 - self.sparsity

    def selects(self, path: str) -> bool:
        """Whether include=/exclude= let a member rewrite the module at ``path`` (fnmatch globs)."""
        return (any(fnmatch.fnmatchcase(path, g) for g in self.include.split("|"))
                and not any(fnmatch.fnmatchcase(path, g) for g in self.exclude.split("|") if g))

    @property
    def mask_pattern(self):
        return parse_pattern(self.pattern)


def _reference(member: str) -> dict:
    """The authors' Sparse-IFT as published (docs/method.md, "Fidelity"): their CIFAR/ImageNet
    code for convolutional models, their GPT-3 configs for transformers (the substitute pass picks
    the latter's iso=nominal on a model with attention, and says so)."""
    common = {"init": "reference", "dst": "rigl", "drop_round": "floor"}
    if member == "wide":       # widths int(w * sqrt(round(1/(1-s)))), no rounding to 8; s' solved
        return {**common, "width": "reference", "round": 1, "count": "layers", "iso": "exact"}
    if member == "dense":
        return common
    return {**common, "iso": "nominal", "shortcut": "sparse", "parallel_form": "cifar", "lowrank": "sparse"}


# preset name -> (member -> keys): a named set of keys, each of which stays its own key
PRESETS = {"none": lambda member: {}, "reference": _reference}


def _check_number(key, value, lo, hi, rule):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(f"policy key {key}={value!r} must be a number ({rule})")
    if not (lo <= value < hi):
        raise PolicyError(f"policy key {key}={value!r} is out of range ({rule})")


def _parse_float(key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise PolicyError(f"policy key {key}={text!r} is not a number; e.g. {key}=0.75") from None


def _convert(key: str, typ, text: str):
    if typ in (float, "float"):
        return _parse_float(key, text)
    if typ in (int, "int"):
        try:
            return int(text)
        except ValueError:
            raise PolicyError(f"policy key {key}={text!r} is not an integer") from None
    return text
