"""The ``siftc`` command line: ``flops``, ``compile`` and ``bench``.

    siftc flops resnet18_cifar
    siftc compile resnet18_cifar --policy wide:0.75 --dump-dir dumps/ --onnx model.onnx
    siftc bench compile | dst | train | onnx | lower

MODEL is a models_zoo name (``resnet18``), ``models_zoo:resnet18``, or ``package.module:factory``
(a callable returning an nn.Module; then pass --input-shape).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import warnings
from pathlib import Path

from siftc.core.errors import PipelineError, PolicyError, SiftcError, UsageError

# torch is imported by the commands that need it, not here: `siftc --version` and `--help` answer
# without it (importing torch takes seconds)
_EXPERIMENT_LIBRARIES = ("yaml", "matplotlib", "PIL")     # the siftc[experiments] extra
from siftc.experiments.schedules import SCHEDULES  # noqa: E402  (torch-free)
DTYPES = ("float32", "float16", "bfloat16", "int64")     # --input-dtype


def _shape(text: str) -> tuple:
    try:
        shape = tuple(int(d) for d in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise UsageError(f"--input-shape {text!r}: give positive sizes separated by commas, e.g. 2,3,32,32")
    return shape


def example_input(shape: tuple, dtype: str):
    """A random input of ``shape``; int64 inputs are token ids 0/1 (valid for any vocabulary)."""
    import torch
    if dtype == "int64":
        return torch.randint(0, 2, shape)
    return torch.randn(*shape).to(getattr(torch, dtype))


def load_model(spec: str, batch_size: int, size, input_shape=None, input_dtype: str = "float32"):
    """(model, example_inputs) for a MODEL argument; ``input_shape`` overrides a zoo model's inputs."""
    import models_zoo
    module_name, _, attr = spec.rpartition(":")
    if not module_name or module_name == "models_zoo":
        name = attr or spec
        try:
            model = models_zoo.create(name)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if input_shape:
            return model, (example_input(_shape(input_shape), input_dtype),)
        return model, models_zoo.example_inputs(name, batch_size, size)
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"cannot load model {spec!r}: {e}") from None
    if not input_shape:
        raise UsageError(f"model {spec!r} is not in models_zoo: give --input-shape, e.g. 2,3,32,32 "
                         f"(and --input-dtype int64 for token ids)")
    try:
        model = factory()
    except Exception as e:      # the user's code: one line saying what it raised, not a traceback
        first = str(e).splitlines()[0] if str(e) else ""
        raise UsageError(f"building model {spec!r}: {attr}() raised {type(e).__name__}: {first}. MODEL must name a "
                         f"factory that takes no arguments (wrap it: def make(): return {attr}(...))") from None
    import torch
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"model {spec!r}: {attr}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model, (example_input(_shape(input_shape), input_dtype),)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _add_case_args(b, steps: int, steps_help: str) -> None:
    """The options of the benches that time training steps on one model (dst, train)."""
    b.add_argument("--model", default=None, help="one zoo model instead of the default cases (mlp, resnet18_cifar)")
    b.add_argument("--policy", default=None, help="policy of --model (default wide:0.9)")
    b.add_argument("--width", type=_positive, default=16, help="ResNet base width of --model")
    b.add_argument("--batch", type=_positive, default=None, help="batch size of --model (default 32)")
    b.add_argument("--steps", type=_positive, default=steps, help=steps_help)


def _add_model_args(p):
    p.add_argument("model", help="models_zoo name, models_zoo:NAME or package.module:factory")
    p.add_argument("--batch-size", type=_positive, default=2, help="batch of the example inputs (default 2)")
    p.add_argument("--size", type=_positive, default=None, help="image side or sequence length (zoo default)")
    p.add_argument("--input-shape", default=None, help="input shape, e.g. 2,3,32,32 (needed for a non-zoo model; "
                                                      "overrides a zoo model's inputs)")
    p.add_argument("--input-dtype", default="float32", choices=list(DTYPES),
                   help="dtype of the --input-shape input (int64: token ids)")


def cmd_flops(args) -> int:
    import siftc
    model, inputs = load_model(args.model, args.batch_size, args.size, args.input_shape, args.input_dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = siftc.compile(model, policy="dense", example_inputs=inputs)
    rep = gm.siftc.report(refresh=False)
    print(f"FLOPs of {args.model} at input shapes {[tuple(x.shape) for x in inputs]}")
    print(f"{'node':40s} {'target':28s} {'category':12s} {'FLOPs':>18s}")
    for n in gm.graph.nodes:
        info = n.meta.get("siftc.flops")
        if info is None or info.category == "none":
            continue
        target = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", str(n.target))
        print(f"{n.name[:40]:40s} {target[:28]:28s} {info.category:12s} {info.flops:>18,}")
    for cat, value in sorted(rep.budget_by_category.items()):
        print(f"{'total ' + cat:82s} {value:>18,}")
    print(f"{'TOTAL':82s} {rep.budget_flops:>18,}")
    print(f"params: {rep.original_params:,}")
    return 0


def _check_outputs(args) -> None:
    """Every output path of ``siftc compile``, refused before the compile (which can take minutes)."""
    from siftc.dumps import check_dump_dir
    if args.target == "onnx" and not args.onnx:
        raise UsageError("--target onnx needs --onnx PATH (where to write the model)")
    if args.onnx_check_max_gb is not None and not args.onnx_check_max_gb > 0:
        raise UsageError(f"--onnx-check-max-gb must be a positive number of GB, got {args.onnx_check_max_gb}")
    if args.onnx:
        from siftc.passes.export_onnx import _check_target
        try:
            _check_target(args.onnx)
        except SiftcError as e:
            raise UsageError(f"--onnx: {e}") from None
    if args.html:
        parent = os.path.dirname(os.path.abspath(args.html))
        if os.path.isdir(args.html) or not os.path.isdir(parent) and not (args.dump_dir and os.path.abspath(
                args.dump_dir) == parent):
            raise UsageError(f"--html {args.html!r}: give a file name in an existing folder (or in --dump-dir)")
    if args.dump_dir:
        check_dump_dir(args.dump_dir)
    for flag, path, own in (("--save", args.save, "siftc.runtime.checkpoint"),
                            ("--save-pretrained", args.save_pretrained, "siftc.runtime.hf_pretrained")):
        if not path:
            continue
        if os.path.exists(path) and not os.path.isdir(path):
            raise UsageError(f"{flag} {path!r} is a file; give a folder")
        if os.path.isdir(path):
            why = importlib.import_module(own)._own_files(path)
            if why:
                raise UsageError(f"{flag} {path!r}: {why}; give a new folder")


def cmd_compile(args) -> int:
    import siftc
    _check_outputs(args)
    model, inputs = load_model(args.model, args.batch_size, args.size, args.input_shape, args.input_dtype)
    onnx_path = args.onnx
    target = "cpu" if args.target == "onnx" else args.target
    gm = siftc.compile(model, target=target, policy=args.policy, example_inputs=inputs, dump_dir=args.dump_dir)
    rep = siftc.report(gm)
    print(json.dumps(rep.to_dict(), indent=2) if args.json else rep)
    if args.dump_dir:
        print(f"\ndumps written to {args.dump_dir.rstrip('/')}/ (pipeline.txt, NN_<pass>.py, flops.md, stats.json, "
              f"viewer.json)")
    if args.save:
        siftc.save(gm, args.save)
        print(f"\ncompiled model saved to {args.save.rstrip('/')}/ (model.safetensors, siftc.json; siftc.load reads it)")
    if args.save_pretrained:
        siftc.save_pretrained(gm, args.save_pretrained)
        print(f"\nHugging Face checkpoint written to {args.save_pretrained.rstrip('/')}/ (config.json with the widened "
              f"sizes, model.safetensors; transformers' from_pretrained reads it, siftc.load resumes it)")
    if args.html:
        siftc.render_html(gm, args.html)
        print(f"\nHTML viewer written to {args.html} ({os.path.getsize(args.html) / 1e6:.2f} MB, self-contained)")
    if onnx_path:
        proto = siftc.compile(gm, target="onnx", path=onnx_path, exporter=args.exporter)
        check = siftc.onnx_check(proto, gm, inputs, rtol=args.rtol, max_gb=args.onnx_check_max_gb)
        print(f"\nONNX written to {onnx_path} ({os.path.getsize(onnx_path) / 1e6:.2f} MB, "
              f"{len(proto.graph.sparse_initializer)} sparse initializers of {len(gm.siftc.masks())} masked weights); "
              + (str(check) if check.skipped else f"{check} (rtol {args.rtol}): ok"))
    return 0


def cmd_html(args) -> int:
    import siftc
    siftc.render_html(args.dump_dir, args.out)
    print(f"HTML viewer written to {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB, self-contained)")
    return 0


def cmd_experiment(args) -> int:
    from siftc.experiments import grid as experiment
    if args.summary_only:
        results = Path(args.results) if args.results else experiment.results_path(experiment.load_spec(args.spec))
    else:
        results = experiment.run(args.spec, data_dir=args.data_dir, progress=not args.no_progress,
                                 dry_run=args.dry_run, shard=experiment.parse_shard(args.shard),
                                 results=args.results)
        if args.dry_run:
            return 0
    out_dir = args.out_dir or str(results.with_suffix(""))     # results/mnist.jsonl -> results/mnist/
    text, plots = experiment.summarise(results, out_dir)
    print(text)
    print(f"results: {results}\nsummary and plots: {out_dir}/summary.md, " + ", ".join(p.name for p in plots))
    return 0


def cmd_train(args) -> int:
    from siftc.experiments.train import train
    line = train(args.recipe, args.policy, args.steps, data_dir=args.data_dir, seed=args.seed,
                 batch_size=args.batch_size, lr=args.lr, out=args.out, progress=not args.no_progress,
                 bn_recalibrate=args.bn_recalibrate, equal_flops=args.equal_flops, schedule=args.schedule)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(line))
    return 0


def cmd_conformance(args) -> int:
    from models_zoo import conformance
    return conformance.main(args)


def cmd_bench(args) -> int:
    from siftc.experiments import bench
    return bench.main(args)


def cmd_selftest(args) -> int:
    from siftc.experiments import selftest
    return selftest.main(args)


def _add_threads(p) -> None:
    # a busy 2-core machine: torch's default (all cores) measured 145 s for a 300-step MNIST run
    # that takes 1 s with one thread; every figure siftc prints states its threads
    p.add_argument("--threads", type=_positive, default=None,
                   help="torch intra-op threads (default: torch's, usually one per core)")


def _torch_version() -> str:
    """The installed torch's version, read from its metadata (no import)."""
    from importlib import metadata
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "not installed"


def main(argv=None) -> int:
    from siftc import __version__
    parser = argparse.ArgumentParser(prog="siftc", description="Sparse Iso-FLOP Transformation compiler")
    parser.add_argument("--version", action="version", version=f"siftc {__version__} (torch {_torch_version()})")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("flops", help="print the FLOP table of a model")
    _add_model_args(p)
    p.set_defaults(fn=cmd_flops)
    p = sub.add_parser("compile", help="compile a model with a policy and print the report")
    _add_model_args(p)
    p.add_argument("--policy", required=True, help="e.g. parallel:0.75 or factorized:0.9,dist=erk")
    p.add_argument("--target", default="cpu", choices=["cpu", "cuda", "onnx"])
    p.add_argument("--onnx", default=None, metavar="PATH",
                   help="also export the compiled model to ONNX at PATH and check it in onnxruntime")
    p.add_argument("--exporter", default="dynamo", choices=["dynamo", "torchscript"], help="ONNX exporter")
    p.add_argument("--rtol", type=float, default=1e-3, help="onnxruntime vs PyTorch relative tolerance")
    p.add_argument("--onnx-check-max-gb", type=float, default=None, metavar="GB",
                   help="skip the onnxruntime check (and say so) when the model's weights, densified as "
                        "onnxruntime loads them, exceed GB (default: always run it)")
    p.add_argument("--dump-dir", default=None, help="write pass-by-pass dumps here")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--html", default=None, metavar="PATH", help="write the pass-by-pass HTML viewer here")
    p.add_argument("--save", default=None, metavar="DIR", help="also save the compiled model here (siftc.save: "
                                                              "safetensors + JSON, reload with siftc.load)")
    p.add_argument("--save-pretrained", default=None, metavar="DIR",
                   help="also write a Hugging Face model compiled with wide or sparse as its own class "
                        "(siftc.save_pretrained: from_pretrained loads it, siftc.load resumes DST on it)")
    p.set_defaults(fn=cmd_compile)
    p = sub.add_parser("html", help="write the pass-by-pass HTML viewer of a dump directory")
    p.add_argument("dump_dir", help="a folder written by siftc compile --dump-dir")
    p.add_argument("-o", "--out", default="report.html", help="the HTML file to write (default report.html)")
    p.set_defaults(fn=cmd_html)
    p = sub.add_parser("train", help="train a models_zoo recipe under a policy (DST), append a JSON line")
    p.add_argument("recipe", help="mnist_mlp | mnist_cnn | cifar_resnet18 | shakespeare_gpt")
    p.add_argument("--policy", default="dense", help="e.g. parallel:0.75,dst=rigl")
    p.add_argument("--steps", type=_positive, default=500)
    p.add_argument("--data-dir", default=None, help="folder with image/ and text/ (default $SIFTC_DATA or ../shared/data)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=_positive, default=None, help="global batch (recipe default)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--out", default="results.jsonl", help="JSON lines file to append to")
    p.add_argument("--bn-recalibrate", type=int, default=0, metavar="N",
                   help="before evaluating, re-estimate BatchNorm statistics on N training batches (default 0: off)")
    p.add_argument("--schedule", default="constant", choices=SCHEDULES,
                   help="learning rate: constant (default) or cosine-annealed to 0 over the steps")
    p.add_argument("--equal-flops", action="store_true",
                   help="--steps are the dense run's: train floor(steps / iso_flop_ratio) steps, as siftc experiment does")
    p.add_argument("--no-progress", action="store_true")
    _add_threads(p)
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("experiment", help="run a resumable grid of training runs at equal training FLOPs, "
                                          "then write a summary table and plots")
    p.add_argument("spec", help="experiment spec (YAML), e.g. models_zoo/experiments/mnist.yaml")
    p.add_argument("--data-dir", default=None, help="folder with image/ and text/ (default $SIFTC_DATA or ../shared/data)")
    p.add_argument("--out-dir", default=None, help="summary.md and plots (default: the results file's name without .jsonl, "
                                                    "e.g. models_zoo/results/mnist/)")
    p.add_argument("--results", default=None, metavar="PATH",
                   help="JSON lines file (default: the spec's results:, beside the spec; give a path outside the "
                        "source tree for specs you run from an installed package)")
    p.add_argument("--dry-run", action="store_true", help="list the cells still to run and stop")
    p.add_argument("--summary-only", action="store_true", help="train nothing: table and plots of the results so far")
    p.add_argument("--shard", default="0/1", metavar="I/N",
                   help="run cells I, I+N, I+2N, ... of the grid (N runners side by side, one per core)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(fn=cmd_experiment)
    p = sub.add_parser("conformance", help="compile real torchvision / Hugging Face models x members and check "
                                           "each cell end to end (needs torchvision and transformers)")
    p.add_argument("--models", default=None, help="comma-separated (default: every torchvision classification "
                                                  "model, hf_gpt2, hf_bert, hf_llama)")
    p.add_argument("--members", default=None, help="comma-separated (default: wide,parallel,factorized,doped,sparse)")
    p.add_argument("--out", default="models_zoo/results/conformance.jsonl", help="JSON lines (resumed)")
    p.add_argument("--table", default=None, metavar="PATH", help="also write the markdown matrix here")
    p.add_argument("--page", default=None, metavar="MD", help="also put the matrix into this markdown page between "
                                                              "its markers (docs/compatibility.md)")
    p.add_argument("--table-only", action="store_true", help="run nothing: print the matrix of --out")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export + onnxruntime check")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(fn=cmd_conformance)
    p = sub.add_parser("bench", help="benchmarks that print ratios measured side by side")
    benches = p.add_subparsers(dest="what", required=True)
    b = benches.add_parser("compile", help="compile time / one eager forward, per model")
    b.add_argument("--models", default=None, help="comma-separated zoo models, or hf:FAMILY for a Hugging Face family "
                   "at a small config (models_zoo/hf_families.py; default: the cases in siftc/experiments/bench.py)")
    b.add_argument("--policy", default=None, help="policy for --models (default parallel:0.75)")
    b.add_argument("--repeat", type=_positive, default=3, help="eager forward passes timed (min)")
    _add_case_args(benches.add_parser("dst", help="DST step / plain step of the same shape"), 200,
                   "timed steps of each model")
    b = benches.add_parser("train", help="train step: dense original vs masked dense vs kernels=auto")
    _add_case_args(b, 10, "timed steps of each model (min is kept)")
    b.add_argument("--convs", action="store_true", help="also time each masked conv, forward + backward, dense "
                   "against sparseprop's sparse convolution (why convs stay masked dense)")
    b = benches.add_parser("onnx", help="onnxruntime: sparse-initializer model vs dense, size and time")
    b.add_argument("--models", default=None, help="comma-separated zoo models (default gpt_tiny,resnet18_cifar)")
    b.add_argument("--policy", default=None, help="policy (default wide:0.9)")
    b = benches.add_parser("lower", help="CPU inference: lowered sparse kernels vs masked dense vs the dense original")
    b.add_argument("--sparsity", type=float, default=0.9, help="Sparse Wide sparsity")
    for b in benches.choices.values():
        _add_threads(b)
    p.set_defaults(fn=cmd_bench)
    p = sub.add_parser("selftest", help="the acceptance check of an install: every member on two zoo models, "
                                        "training, torch.compile, save/load, ONNX; GPU paths with --device cuda")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="three members and fewer steps")
    p.add_argument("--no-progress", action="store_true")
    _add_threads(p)
    p.set_defaults(fn=cmd_selftest)
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        import torch
        torch.set_num_threads(args.threads)
    # exit codes as argparse tools have them: 2 for a bad argument, 1 when siftc refuses the model
    # or a file is missing; one line either way (no traceback)
    try:
        return args.fn(args)
    except (PolicyError, PipelineError, UsageError) as e:
        print(f"siftc: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if e.name not in _EXPERIMENT_LIBRARIES:
            raise
        print(f"siftc: error: 'siftc {args.command}' needs {e.name} (the experiments extra): "
              f"pip install 'siftc[experiments]'", file=sys.stderr)
        return 1
    except (SiftcError, OSError) as e:
        print(f"siftc: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
