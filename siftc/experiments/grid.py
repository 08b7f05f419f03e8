"""``siftc experiment SPEC.yaml``: a resumable grid of training runs at equal training FLOPs.

A spec names recipes (models_zoo/recipes.py) and, per recipe, the dense step count, members,
sparsities, DST methods and seeds. Every cell gets the dense run's training FLOPs: a compiled
model's forward costs ``iso_flop_ratio`` x the dense one (1.00 under iso=exact), so a cell trains
``floor(steps / iso_flop_ratio)`` steps, and the DST ledger's FLOPs (RigL's dense-gradient steps
included) are written with the result so the equality can be checked, not assumed.

Results are JSON lines (one per cell, appended as each cell ends); a cell already in the file
is skipped, so an interrupted study resumes where it stopped. ``summarise`` turns the lines into
a mean +- std table over seeds and matplotlib plots (metric vs sparsity per member; metric vs
training FLOPs).

Spec (YAML)::

    name: mnist
    results: models_zoo/results/mnist.jsonl      # relative to the working directory (as every path
                                                 # on the command line), never to the spec's folder
    recipes:
      - recipe: mnist_mlp
        steps: 600                               # the dense run's steps: the FLOP budget
        members: [wide, parallel]                # dense is always run (once per seed)
        sparsities: [0.5, 0.75, 0.9]
        dst: [static, rigl]
        seeds: [0, 1, 2]
        options: {wide: "stem=sparse"}           # extra policy options per member
        bn_recalibrate: 0                        # >0: re-estimate BatchNorm statistics on this many
                                                 # training batches before evaluating (siftc.train)
        lr: 0.05                                 # optional: the recipe's own when absent
        batch_size: 64                           # optional: the recipe's own when absent
        schedule: constant                       # or cosine: lr annealed to 0 over the cell's steps

Each entry's cells carry its own steps, lr, batch size, schedule and recalibration, so one recipe may appear
several times. The summary keeps apart runs of one recipe that differ in any of these: their tables
and plots are named for what differs (``cifar_resnet18_1000steps``, ``mnist_mlp_lr0.01``).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from siftc.core import atomic
from siftc.core.errors import SiftcError
from siftc.experiments.train import SCHEDULES, check_appendable


@dataclass(frozen=True)
class Cell:
    recipe: str
    member: str
    sparsity: float
    dst: str
    seed: int
    dense_steps: int
    policy: str
    bn_recalibrate: int = 0
    batch_size: int | None = None      # None: the recipe's own
    lr: float | None = None
    schedule: str = "constant"

    @property
    def key(self) -> str:
        key = f"{self.recipe}|{self.policy}|seed={self.seed}|dense_steps={self.dense_steps}"
        defaults = {f.name: f.default for f in fields(self)}
        for name in ("batch_size", "lr", "bn_recalibrate", "schedule"):   # only what differs from the default:
            if getattr(self, name) != defaults[name]:                     # older keys stay valid
                key += f"|{name}={getattr(self, name)}"
        return key


_RECIPE_KEYS = {"recipe", "steps", "members", "sparsities", "dst", "seeds", "options", "batch_size", "lr",
                "bn_recalibrate", "schedule"}


def load_spec(path) -> dict:
    import yaml
    path = Path(path)
    if not path.exists():
        raise SiftcError(f"experiment spec {path} not found")
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec.get("recipes"), list) or not spec["recipes"]:
        raise SiftcError(f"{path}: the spec needs a non-empty 'recipes:' list (see siftc/experiments/grid.py)")
    for i, r in enumerate(spec["recipes"]):
        unknown = set(r) - _RECIPE_KEYS
        if unknown or "recipe" not in r or "steps" not in r:
            raise SiftcError(f"{path}: recipes[{i}] needs 'recipe' and 'steps'; unknown keys {sorted(unknown)}; "
                             f"allowed: {', '.join(sorted(_RECIPE_KEYS))}")
        if r.get("schedule", "constant") not in SCHEDULES:
            raise SiftcError(f"{path}: recipes[{i}] schedule {r['schedule']!r}: use one of {', '.join(SCHEDULES)}")
    spec["_dir"] = path.parent
    return spec


def cells(spec: dict) -> list[Cell]:
    from siftc.core.policy import Policy
    out = []
    for r in spec["recipes"]:
        seeds, steps, bn = r.get("seeds", [0]), int(r["steps"]), int(r.get("bn_recalibrate", 0))
        hyper = {"batch_size": r.get("batch_size"), "lr": r.get("lr"), "schedule": r.get("schedule", "constant")}
        options = r.get("options", {}) or {}
        for seed in seeds:
            out.append(Cell(r["recipe"], "dense", 0.0, "static", seed, steps, "dense", bn, **hyper))
            for member in r.get("members", []):
                for s in r.get("sparsities", []):
                    for method in r.get("dst", ["static"]):
                        policy = f"{member}:{s}" + (f",dst={method}" if method != "static" else "")
                        if options.get(member):
                            policy += "," + options[member]
                        out.append(Cell(r["recipe"], member, float(s), method, seed, steps,
                                        str(Policy.parse(policy)), bn, **hyper))     # canonical: one key per cell
    unique: dict = {}
    for c in out:            # two recipe entries share their dense runs
        unique.setdefault(c.key, c)
    return list(unique.values())


def _done(results: Path) -> set:
    if not results.exists():
        return set()
    return {r.get("cell") for r in atomic.read_json_lines(results)}


def results_path(spec: dict) -> Path:
    """The spec's results file, relative to the working directory: running a spec that ships inside
    the package or the source tree writes where the user is, not into the spec's folder."""
    return Path(spec.get("results", f"{spec.get('name', 'experiment')}.jsonl")).resolve()


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N): this runner takes every N-th cell of the grid, starting at cell I."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SiftcError(f"--shard {text!r}: write I/N, e.g. 0/2 and 1/2 for two runners") from None
    if n < 1 or not 0 <= i < n:
        raise SiftcError(f"--shard {text!r}: needs 0 <= I < N")
    return i, n


def run(spec_path, data_dir=None, progress: bool = True, dry_run: bool = False,
        shard: tuple[int, int] = (0, 1), results=None) -> Path:
    """Run every cell of the spec not yet in its results file; returns the results path.

    ``shard=(i, n)`` takes the grid's cells i, i+n, i+2n, ... so n runners (one per core, each with
    OMP_NUM_THREADS=1) split a study without overlap; they share one results file, each line being one
    ``write`` in append mode. The split is by position in the full grid, so it is the same on resume."""
    from tqdm import tqdm

    from siftc.experiments.train import train
    spec = load_spec(spec_path)
    results = Path(results).resolve() if results else results_path(spec)   # --results: not beside the spec
    if not results.parent.is_dir():
        raise SiftcError(f"results folder {results.parent} does not exist (create it, or pass --results PATH)")
    check_appendable(results)         # before any training: a finished cell that cannot be written is lost
    i, n = shard
    done = _done(results)
    todo = [c for k, c in enumerate(cells(spec)) if k % n == i and c.key not in done]
    if dry_run:
        for c in todo:
            print(c.key)
        print(f"{len(todo)} cells to run, results in {results}")
        return results
    for c in tqdm(todo, desc=f"experiment {spec.get('name', '')}", disable=not progress, unit="cell"):
        if c.key in _done(results):     # another runner on the same results file finished it meanwhile
            continue
        line = train(c.recipe, c.policy, c.dense_steps, data_dir=data_dir, seed=c.seed,
                     batch_size=c.batch_size, lr=c.lr, out=None, progress=False, equal_flops=True,
                     bn_recalibrate=c.bn_recalibrate, schedule=c.schedule)
        line.update({"cell": c.key, "experiment": spec.get("name", ""), "member": c.member, "sparsity": c.sparsity,
                     "dst": c.dst, "dense_steps": c.dense_steps, "threads": torch.get_num_threads()})
        atomic.append_json_line(results, line)    # one line per finished cell: a crash loses one cell at most
    return results


# ---------------------------------------------------------------------------- summary
def read_results(path) -> list[dict]:
    return atomic.read_json_lines(path)


_SETTING_FIELDS = ("dense_steps", "bn_recalibrate", "lr", "batch_size", "schedule")


def _setting(ln: dict) -> tuple:
    """What a cell's number depends on besides member, s, DST and seed (recipe, dense steps,
    recalibration, lr, batch size, lr schedule): runs that differ in one are other experiments, never averaged
    together. Lines written before the lr was recorded trained at the recipe's own lr."""
    lr = ln.get("lr")
    if lr is None:
        from models_zoo import recipes
        lr = recipes.RECIPES[ln["recipe"]].lr if ln["recipe"] in recipes.RECIPES else None
    return (ln["recipe"], ln.get("dense_steps", ln["steps"]), ln.get("bn_recalibrate", 0), lr, ln.get("batch_size"),
            ln.get("schedule", "constant"))


def setting_labels(lines: list[dict]) -> dict:
    """setting -> the name tables and plot files use: the recipe alone when the results hold one
    setting of it, else the recipe with the fields that differ appended (``cifar_resnet18_1000steps``)."""
    settings = sorted({_setting(ln) for ln in lines}, key=str)
    suffix = {"dense_steps": "{}steps", "bn_recalibrate": "bn{}", "lr": "lr{}", "batch_size": "batch{}",
              "schedule": "{}"}
    labels = {}
    for st in settings:
        same_recipe = [o for o in settings if o[0] == st[0]]
        parts = [suffix[f].format(st[i + 1]) for i, f in enumerate(_SETTING_FIELDS)
                 if len({o[i + 1] for o in same_recipe}) > 1]
        labels[st] = "_".join([st[0], *parts])
    return labels


def _variant(ln: dict) -> str:
    """The policy keys a cell sets beyond member, sparsity and DST (``count=all,shortcut=member``;
    empty for the defaults of its day): cells that differ in them are other policies, reported
    apart, never averaged together."""
    parts = (ln.get("policy") or "").split(",")[1:]
    return ",".join(p for p in parts if not p.startswith("dst="))


def member_label(row: dict) -> str:
    """``parallel`` or ``parallel (parallel_form=imagenet)``: the member as tables and plots name it."""
    return row["member"] + (f" ({row['variant']})" if row.get("variant") else "")


def summary_rows(lines: list[dict]) -> list[dict]:
    labels = setting_labels(lines)
    groups: dict = {}
    for ln in lines:
        groups.setdefault((labels[_setting(ln)], ln["member"], ln["sparsity"], ln["dst"], _variant(ln)), []).append(ln)
    rows = []
    for (recipe, member, s, method, variant), g in sorted(groups.items(),
                                                          key=lambda kv: (kv[0][0], kv[0][1] != "dense", kv[0])):
        values = [x["value"] for x in g]
        dense = groups.get((recipe, "dense", 0.0, "static", ""), [])
        dense_flops = statistics.mean(x["train_flops"] for x in dense) if dense else None
        rows.append({"recipe": recipe, "member": member, "variant": variant, "sparsity": s, "dst": method,
                     "metric": g[0]["metric"],
                     "n": len(values), "mean": statistics.mean(values),
                     "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                     "steps": statistics.mean(x["steps"] for x in g), "setting": _setting(g[0]),
                     "flops_vs_dense": (statistics.mean(x["train_flops"] for x in g) / dense_flops) if dense_flops else None})
    return rows


def _fmt_value(metric: str, v: float) -> str:
    return f"{100 * v:.2f}%" if metric == "test_accuracy" else f"{v:.3f}"


def summary_markdown(rows: list[dict]) -> str:
    out = ["| recipe | member | s | DST | metric | mean +- std | seeds | steps | train FLOPs / dense |",
           "|---|---|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        spread = _fmt_value(r["metric"], r["std"]) if r["metric"] != "test_accuracy" else f"{100 * r['std']:.2f}"
        ratio = f"{r['flops_vs_dense']:.3f}" if r["flops_vs_dense"] is not None else "n/a"
        out.append(f"| {r['recipe']} | {member_label(r)} | {r['sparsity'] if r['member'] != 'dense' else ''} | "
                   f"{r['dst'] if r['member'] != 'dense' else ''} | {r['metric']} | "
                   f"{_fmt_value(r['metric'], r['mean'])} +- {spread} | {r['n']} | {r['steps']:.0f} | {ratio} |")
    return "\n".join(out) + "\n"


def _describe(setting: tuple) -> str:
    _, steps, bn, lr, batch, schedule = setting
    text = f"the dense run's {steps} steps"
    text += (f", lr {lr}" if lr is not None else "") + (" cosine-annealed" if schedule == "cosine" else "")
    text += f", batch {batch}" if batch else ""
    return text + (f", BatchNorm recalibrated on {bn} batches" if bn else "")


def headline_markdown(rows: list[dict]) -> str:
    """Per recipe: one row per member x DST method, one column per sparsity, the dense run on top
    (mean +- std (seeds)); the table the README reports."""
    out = []
    for recipe in sorted({r["recipe"] for r in rows}):
        rr = [r for r in rows if r["recipe"] == recipe]
        metric = rr[0]["metric"]
        sparsities = sorted({r["sparsity"] for r in rr if r["member"] != "dense"})

        def cell(r, metric=metric):
            std = 100 * r["std"] if metric == "test_accuracy" else r["std"]
            return f"{_fmt_value(metric, r['mean'])} +- {std:.2f} ({r['n']})"
        out += [f"**{recipe}**: {metric}, mean +- std (seeds), equal training FLOPs ({_describe(rr[0]['setting'])})", "",
                "| member | DST | " + " | ".join(f"s={s}" for s in sparsities) + " |",
                "|---|---|" + "---:|" * len(sparsities)]
        dense = next((r for r in rr if r["member"] == "dense" and not r["variant"]), None)
        if dense is not None:
            out.append("| dense | | " + " | ".join(cell(dense) for _ in sparsities) + " |")
        order = {"rigl": 0, "set": 1, "static": 2}
        for member, method in sorted({(member_label(r), r["dst"]) for r in rr if r is not dense},
                                     key=lambda k: (k[0], order.get(k[1], 3))):
            by_s = {r["sparsity"]: r for r in rr if member_label(r) == member and r["dst"] == method}
            out.append(f"| {member} | {method} | " + " | ".join(cell(by_s[s]) if s in by_s else "" for s in sparsities)
                       + " |")
        out.append("")
    return "\n".join(out)


def plot(lines: list[dict], out_dir) -> list[Path]:
    """Per recipe: metric vs sparsity (one line per member x DST, dense as a band) and metric vs
    training FLOPs (every run). Returns the PNG paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, labels = summary_rows(lines), setting_labels(lines)
    runs_of: dict = {}                     # label -> its lines, each line's setting computed once
    for x in lines:
        runs_of.setdefault(labels[_setting(x)], []).append(x)
    files = []
    for recipe in sorted({r["recipe"] for r in rows}):
        rr = [r for r in rows if r["recipe"] == recipe]
        metric = rr[0]["metric"]
        fig, ax = plt.subplots(figsize=(7.5, 4))
        dense = [r for r in rr if r["member"] == "dense" and not r["variant"]]
        if dense:
            d = dense[0]
            ax.axhline(d["mean"], color="k", lw=1, label=f"dense ({d['n']} seed{'s' if d['n'] > 1 else ''})")
            ax.axhspan(d["mean"] - d["std"], d["mean"] + d["std"], color="k", alpha=0.1)
        sparse = [r for r in rr if not (dense and r is dense[0])]
        members = sorted({member_label(r) for r in sparse})
        style = {"static": ":", "set": "--", "rigl": "-"}       # colour = member (and policy), line = DST method
        for member, method in sorted({(member_label(r), r["dst"]) for r in sparse}):
            pts = sorted((r["sparsity"], r["mean"], r["std"]) for r in sparse
                         if member_label(r) == member and r["dst"] == method)
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                        color=f"C{members.index(member) % 10}", linestyle=style.get(method, "-"), label=f"{member} {method}")
        files.append(_save(plt, fig, ax, "sparsity s", metric, f"{recipe}: {metric} at equal training FLOPs",
                           out_dir / f"{recipe}_vs_sparsity.png"))
        fig, ax = plt.subplots(figsize=(7.5, 4))
        runs = runs_of[recipe]
        by_member: dict = {}
        for x in runs:
            by_member.setdefault(member_label({**x, "variant": _variant(x)}), []).append(x)
        for member, pts in sorted(by_member.items()):
            ax.scatter([x["train_flops"] for x in pts], [x["value"] for x in pts], label=member, s=14)
        files.append(_save(plt, fig, ax, "training FLOPs (DST ledger)", metric, f"{recipe}: every run",
                           out_dir / f"{recipe}_vs_flops.png"))
    return files


def _save(plt, fig, ax, xlabel: str, ylabel: str, title: str, path: Path) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))   # beside the axes: never over a curve
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summarise(results, out_dir) -> tuple[str, list[Path]]:
    """Write ``summary.md`` and the plots into ``out_dir``; returns (markdown, plot paths)."""
    lines = read_results(results)
    if not lines:
        raise SiftcError(f"{results} holds no results yet; run the experiment first")
    rows = summary_rows(lines)
    text = headline_markdown(rows) + "\n" + summary_markdown(rows)
    out_dir = Path(out_dir)
    # summary and plots belong together: written into a folder beside out_dir and swapped in whole
    # (siftc.core.atomic), other files in out_dir carried over
    tmp = atomic.begin_dir(out_dir)
    try:
        atomic.write_text(tmp / "summary.md", text)
        plots = plot(lines, tmp)
        mine = {"summary.md", *(p.name for p in plots)}
        atomic.commit_dir(tmp, out_dir, carry=lambda name: name not in mine)
    except BaseException:
        atomic.abandon_dir(tmp)
        raise
    return text, [out_dir / p.name for p in plots]
