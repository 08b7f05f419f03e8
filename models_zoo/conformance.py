"""Conformance sweep: real library models x Sparse-IFT members, each cell checked end to end.

A cell is one (model, member) at s = 0.75. It passes when the model compiles, keeps its output
shape, runs forward + backward in train mode at batch 1 and 2, its matmul-class FLOP budget
equals torch's FlopCounterMode (math SDPA) within 0.5%, the compiled model's dense matmul-class
FLOPs (masks ignored) equal FlopCounterMode on it within 0.5%, its iso-FLOP ratio is within the
policy tolerance (``sparse`` is the non-iso baseline), and its ONNX export matches onnxruntime.
Anything else is the cell's reason, and the report's own notes (uncounted ops, opaque modules)
ride along.

Models: every torchvision classification model (``torchvision.models.list_models``, random init,
10 classes, 64x64 inputs where the model takes them, else 224) and Hugging Face GPT-2, BERT and
Llama from small configs (random init, offline). Results are JSON lines (resumable: a cell
already in the file is skipped); ``table`` renders the model x member matrix of docs/compatibility.md (``write_page``).

    siftc conformance --out models_zoo/results/conformance.jsonl            # the whole sweep
    siftc conformance --models resnet18,hf_gpt2 --members wide,parallel     # a few cells
    siftc conformance --table-only --out models_zoo/results/conformance.jsonl
"""
from __future__ import annotations

import json
import os
import time
import traceback
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from siftc.core import atomic
from siftc.core.errors import UsageError

MEMBERS = ("wide", "parallel", "factorized", "doped", "sparse")
HF_MODELS = ("hf_gpt2", "hf_bert", "hf_llama")
TOLERANCE = 0.005


class LogitsOf(nn.Module):
    """A Hugging Face model called with token ids, returning its logits: the cell's unit of work
    (ModelOutput dictionaries are not tensors the checks can compare)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids):
        return self.model(input_ids=input_ids).logits


def torchvision_models() -> list[str]:
    import torchvision
    return sorted(torchvision.models.list_models(module=torchvision.models))


def all_models() -> list[str]:
    return torchvision_models() + list(HF_MODELS)


def build(name: str):
    """(model, input maker: batch -> tuple of tensors) for a torchvision or HF model name."""
    torch.manual_seed(0)
    if name in HF_MODELS:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers as tf
        if name == "hf_gpt2":
            model = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=64,
                                                     bos_token_id=0, eos_token_id=0))
        elif name == "hf_bert":
            model = tf.BertForMaskedLM(tf.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                     intermediate_size=128, vocab_size=128, max_position_embeddings=64))
        else:
            model = tf.LlamaForCausalLM(tf.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                       num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
                                                       max_position_embeddings=64, bos_token_id=0, eos_token_id=0))
        model.config.use_cache = False      # the KV cache is an output torch.export cannot carry
        return LogitsOf(model), lambda b: (torch.randint(0, 128, (b, 16)),)
    import torchvision
    model = torchvision.models.get_model(name, weights=None, num_classes=10)
    for side in (64, 224, 299):
        try:       # in train mode, as it is compiled (Inception's auxiliary head needs 299 there)
            with torch.no_grad():
                model.train()(torch.randn(2, 3, side, side))
            break
        except Exception:   # noqa: BLE001 - the model needs a larger input: try the next size
            continue
    return model.train(), lambda b, s=side: (torch.randn(b, 3, s, s),)


def hf_gpt2() -> nn.Module:
    """The sweep's tiny Hugging Face GPT-2 (logits out), for ``siftc compile models_zoo.conformance:hf_gpt2``."""
    return build("hf_gpt2")[0]


def hf_bert() -> nn.Module:
    return build("hf_bert")[0]


def hf_llama() -> nn.Module:
    return build("hf_llama")[0]


def flop_counter(model, inputs) -> int:
    """FlopCounterMode's count, math SDPA. Gradients stay on: under no_grad an eval-mode
    nn.MultiheadAttention takes its fused fast path, whose attention FlopCounterMode does not see."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        model(*inputs)
    return fc.get_total_flops()


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE * max(abs(b), 1)


def run_cell(name: str, member: str, sparsity: float = 0.75, onnx: bool = True) -> dict:
    """Compile and check one cell; never raises (a failure is the cell's reason)."""
    import siftc
    t0 = time.perf_counter()
    row = {"model": name, "member": member, "sparsity": sparsity, "status": "ok", "reason": ""}
    stage = "build"
    try:
        model, make = build(name)
        x2 = make(2)
        stage = "compile"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gm = siftc.compile(model, policy=f"{member}:{sparsity}", example_inputs=x2)
        rep = gm.siftc.report()
        # iso_ratio: the ratio the policy's count= solved; all_ratio over every op (rows before
        # 2026-12-07 have no all_ratio: count=all was the default, so their iso_ratio is it)
        row.update(iso_ratio=round(rep.iso_flop_ratio, 5), all_ratio=round(rep.all_ratio, 5), count=rep.count,
                   matmul_ratio=round(rep.matmul_ratio, 5),
                   layers=len(rep.layers), left_dense=len(rep.left_dense),
                   measured=sorted({m["target"] for m in rep.measured})[:8],
                   uncounted=[f"{u['node']}: {u['reason']}" for u in rep.uncounted][:4],
                   warnings=len(caught))
        problems = []
        stage = "output shape"
        model.eval()
        gm.eval()
        with torch.no_grad():
            ref, got = model(*x2), gm(*x2)
        if not isinstance(got, torch.Tensor) or not isinstance(ref, torch.Tensor):
            raise RuntimeError(f"in eval mode the compiled model returns {type(got).__name__}, the model "
                               f"{type(ref).__name__}: a forward that branches on self.training in Python "
                               f"is captured in the mode it was compiled in (here train)")
        if got.shape != ref.shape:
            problems.append(f"output shape {tuple(got.shape)} != {tuple(ref.shape)}")
        stage = "flops"
        fc_model = flop_counter(model, x2)
        row["fc_budget"], row["siftc_matmul_budget"] = fc_model, rep.matmul_budget_flops
        if not _close(rep.matmul_budget_flops, fc_model):
            problems.append(f"matmul budget {rep.matmul_budget_flops:,} != FlopCounterMode {fc_model:,}")
        dense_compiled = sum(n.meta["siftc.flops"].dense_flops for n in gm.graph.nodes
                             if n.meta.get("siftc.flops") and n.meta["siftc.flops"].category in
                             ("conv", "linear", "matmul", "attention", "opaque"))
        fc_gm = flop_counter(gm.eval(), x2)
        if not _close(dense_compiled, fc_gm):
            problems.append(f"compiled dense matmul {dense_compiled:,} != FlopCounterMode {fc_gm:,}")
        if member != "sparse" and abs(rep.iso_flop_ratio - 1) > TOLERANCE:
            problems.append(f"iso ratio {rep.iso_flop_ratio:.4f}")
        if rep.uncounted:
            problems.append(f"{len(rep.uncounted)} uncounted node(s)")
        stage = "train step"
        gm.train()
        for b in (1, 2):
            gm.zero_grad()
            out = torch.utils._pytree.tree_leaves(gm(*make(b)))[0]
            out.float().square().mean().backward()
        if onnx:
            stage = "onnx"
            gm.eval()
            proto = siftc.compile(gm, target="onnx", example_inputs=x2)
            chk = siftc.onnx_check(proto, gm, x2, rtol=1e-3)
            row["onnx_rel_err"] = float(f"{chk.max_rel_err:.3g}")
        if problems:
            row.update(status="fail", reason="; ".join(problems))
    except Exception as e:   # noqa: BLE001 - the cell records what broke
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        row.update(status="fail", reason=f"{stage}: {type(e).__name__}: {first[:300]}")
        row["trace"] = traceback.format_exc(limit=-3)[-1500:]
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def load(path) -> list[dict]:
    return atomic.read_json_lines(path)


def run_cell_isolated(name: str, member: str, timeout: int = 1800, memory_gb: float = 16.0) -> dict:
    """``run_cell`` in a child process: one cell cannot leak memory into the next, a cell whose
    private memory passes ``memory_gb`` fails with MemoryError (its reason) instead of taking the
    machine down, and one over ``timeout`` seconds is stopped and says so.

    The cap is RLIMIT_DATA (private writable memory: heap and anonymous maps, which is where
    tensors live), not RLIMIT_AS: the CUDA build of torch and onnxruntime map about 3.6 GB of
    address space that is never resident, so an address-space cap failed models that fit."""
    import resource
    import subprocess
    import sys

    def limit():
        cap = int(memory_gb * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    t0 = time.perf_counter()
    row = {"model": name, "member": member, "sparsity": 0.75, "status": "fail"}
    try:
        done = subprocess.run([sys.executable, "-m", "models_zoo.conformance", name, member], capture_output=True,
                              text=True, timeout=timeout, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        return {**row, "reason": f"not finished within {timeout} s on this machine", "seconds": timeout}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    tail = (done.stderr.strip().splitlines() or ["?"])[-1][:300]
    why = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}: {tail}"
    return {**row, "reason": f"cell process failed ({why}; private memory capped at {memory_gb:g} GB)",
            "seconds": round(time.perf_counter() - t0, 1)}


def sweep(models, members, out, onnx: bool = True, progress: bool = True, isolate: bool = True) -> list[dict]:
    done = {(r["model"], r["member"]) for r in load(out)}
    todo = [(m, k) for m in models for k in members if (m, k) not in done]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    try:
        from tqdm import tqdm
        bar = tqdm(todo, disable=not progress, desc="conformance")
    except ImportError:       # pragma: no cover
        bar = todo
    for name, member in bar:
        row = run_cell_isolated(name, member) if isolate and onnx else run_cell(name, member, onnx=onnx)
        atomic.append_json_line(out, row)
    return load(out)


def table(rows: list[dict], members=MEMBERS, models=None) -> str:
    """The model x member matrix: ok (iso ratio / matmul ratio), the reason, or "not run" for a
    cell of ``models`` without a row."""
    by = {}
    for r in rows:
        by[(r["model"], r["member"])] = r
    names = {r["model"] for r in rows} | set(models or ())
    models = sorted(names, key=lambda m: (m in HF_MODELS, m))
    ok = sum(1 for r in by.values() if r["status"] == "ok")
    missing = len(models) * len(members) - len(by)
    old = sum(1 for r in by.values() if r["status"] == "ok" and "all_ratio" not in r)
    lines = [f"{ok} of {len(by)} cells ok (s = 0.75; ratios: all FLOPs / matmul-class; a * marks a cell run with "
             f"the defaults before 2026-12-07: count=all, shortcut=member, parallel_form=siftc"
             + (f", {old} cells" if old else "") + ")"
             + (f"; {missing} cells not run." if missing else "."), "",
             "| model | " + " | ".join(members) + " |", "|---|" + "---|" * len(members)]
    for m in models:
        cells = []
        for k in members:
            r = by.get((m, k))
            if r is None:
                cells.append("not run")
            elif r["status"] == "ok":
                star = "" if "all_ratio" in r else "*"
                cells.append(f"ok {r.get('all_ratio', r['iso_ratio']):.3f}/{r['matmul_ratio']:.3f}{star}")
            else:
                cells.append(r["reason"].replace("|", "/")[:120])
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(args) -> int:
    models = args.models.split(",") if args.models else all_models()
    members = args.members.split(",") if args.members else list(MEMBERS)
    if not args.table_only:
        torch.set_num_threads(args.threads)
        sweep(models, members, args.out, onnx=not args.no_onnx, progress=not args.no_progress)
    rows = [r for r in load(args.out) if r["model"] in models and r["member"] in members]
    text = table(rows, members, models)
    print(text)
    if args.table:
        atomic.write_text(args.table, text + "\n")
    if args.page:
        write_page(args.page, text)
    return 0


PAGE_START, PAGE_END = "<!-- conformance matrix: start -->", "<!-- conformance matrix: end -->"


def write_page(path, text: str) -> None:
    """Put the matrix between the markers of a markdown page (docs/compatibility.md)."""
    page = Path(path).read_text()
    if PAGE_START not in page or PAGE_END not in page:
        raise UsageError(f"{path} has no '{PAGE_START}' ... '{PAGE_END}' markers to put the matrix between")
    head, _, rest = page.partition(PAGE_START)
    _, _, tail = rest.partition(PAGE_END)
    atomic.write_text(path, f"{head}{PAGE_START}\n{text}\n{PAGE_END}{tail}")


if __name__ == "__main__":       # one cell, as run_cell_isolated runs it: the row as a JSON line
    import sys
    torch.set_num_threads(1)
    print(json.dumps(run_cell(sys.argv[1], sys.argv[2])))
