"""Bad input and faults get one clear SiftcError before any work, and nothing is lost.

Each test is a finding of the issue "Reliability" reproduced on a small model (before: a raw
KeyError, a state silently adopted, a run that stepped past its end without a word).
"""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import siftc
from siftc.core.errors import SiftcError


def _compiled(policy="wide:0.75,dst=rigl,dT=2", width=32):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                          nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return siftc.compile(model, policy=policy, example_inputs=(torch.randn(4, 8),))


@pytest.mark.parametrize("total", [0, -5, 2.5, True, "10"])
def test_dst_total_steps_must_be_a_positive_integer(total):
    gm = _compiled()
    with pytest.raises(SiftcError, match="total_steps"):
        siftc.DST(gm, torch.optim.SGD(gm.parameters(), lr=0.1), total_steps=total)


def test_two_dst_objects_on_one_model_are_refused_until_the_first_is_closed():
    gm = _compiled()
    opt = torch.optim.SGD(gm.parameters(), lr=0.1)
    first = siftc.DST(gm, opt, total_steps=10)
    with pytest.raises(SiftcError, match="already has a DST object"):
        siftc.DST(gm, opt, total_steps=10)
    first.close()
    siftc.DST(gm, opt, total_steps=10)
    with pytest.raises(SiftcError, match="closed"):
        first.step()


def test_stepping_past_total_steps_warns_once():
    gm = _compiled()
    opt = torch.optim.SGD(gm.parameters(), lr=0.1)
    dst = siftc.DST(gm, opt, total_steps=2)
    x = torch.randn(4, 8)
    with pytest.warns(UserWarning, match="past total_steps=2") as caught:
        for _ in range(4):
            gm(x).sum().backward()
            opt.step()
            dst.step()
            opt.zero_grad()
    assert sum("past total_steps" in str(w.message) for w in caught) == 1


def _state(policy="wide:0.75,dst=rigl,dT=2", total=10, width=32):
    gm = _compiled(policy, width)
    return siftc.DST(gm, torch.optim.SGD(gm.parameters(), lr=0.1), total_steps=total).state_dict()


@pytest.mark.parametrize("other,match", [
    (dict(policy="wide:0.75,dst=set,dT=2"), "method='set'"),
    (dict(total=20), "end_step=15"),
    (dict(width=48), "masked layers differ"),
])
def test_dst_load_state_dict_refuses_another_runs_state(other, match):
    """The state of another method, length or model was adopted silently (the method switched
    from rigl to set; end_step landed beyond total_steps)."""
    state = _state(**other)
    gm = _compiled()
    dst = siftc.DST(gm, torch.optim.SGD(gm.parameters(), lr=0.1), total_steps=10)
    with pytest.raises(SiftcError, match=match):
        dst.load_state_dict(state)


def test_dst_load_state_dict_of_the_wrong_dict_says_what_it_is():
    """A model state_dict passed by mistake gave a raw KeyError: 'step_count'."""
    gm = _compiled()
    dst = siftc.DST(gm, torch.optim.SGD(gm.parameters(), lr=0.1), total_steps=10)
    with pytest.raises(SiftcError, match="not a DST state .*missing step_count"):
        dst.load_state_dict(gm.state_dict())
    dst.load_state_dict(_state())          # its own run's state loads


@pytest.mark.parametrize("out", ["missing_dir/r.jsonl", "."])
def test_train_checks_its_output_path_before_training(tmp_path, monkeypatch, out):
    """siftc train --out UNWRITABLE trained the whole run (97 s) and then lost the result."""
    from siftc.experiments import train as train_mod
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SiftcError, match="cannot append results"):
        train_mod.train("mnist_mlp", "dense", 5, data_dir="/nonexistent", out=out, progress=False)


@pytest.mark.parametrize("steps", [0, -5])
def test_train_refuses_a_non_positive_step_count(steps):
    from siftc.experiments import train as train_mod
    with pytest.raises(SiftcError, match="at least 1 step"):
        train_mod.train("mnist_mlp", "dense", steps, data_dir="/nonexistent", progress=False)


def test_onnx_file_respects_the_umask_and_leaves_no_temp_file(tmp_path, monkeypatch):
    """ONNX files were written 0600 (mkstemp): a serving container or another user could not
    read them. A failed write leaves no hidden .siftc-*.onnx temp file."""
    import os
    import stat

    import onnx

    from siftc.passes import export_onnx as onnx_export
    gm = _compiled("sparse:0.5")
    path = tmp_path / "m.onnx"
    old = os.umask(0o022)
    try:
        siftc.compile(gm, target="onnx", path=path, exporter="torchscript")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    proto = onnx.load(path)

    def fail(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(onnx, "save_model", fail)
    with pytest.raises(SiftcError, match="cannot write ONNX model"):
        onnx_export.save_onnx(proto, tmp_path / "n.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize("name", ["resnet18_cifar", "gpt_tiny"])
def test_onnx_export_has_dynamic_batch_and_sequence_axes(name):
    """Exported at batch 2, onnxruntime refused batch 3 (InvalidArgument). The dynamo export now
    keeps the batch axis (and a token model's sequence axis) dynamic; checked at two other sizes."""
    import numpy as np
    import onnxruntime as ort

    import models_zoo
    torch.manual_seed(0)
    x = models_zoo.example_inputs(name, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = siftc.compile(models_zoo.create(name), policy="sparse:0.75", example_inputs=x)
        proto = siftc.compile(gm, target="onnx", example_inputs=x)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    gm.eval()
    for batch, seq in ((1, 9), (3, 17)):
        (y,) = models_zoo.example_inputs(name, batch)
        if name == "gpt_tiny":
            y = y[:, :seq]
        got = sess.run(None, {sess.get_inputs()[0].name: y.numpy()})[0]
        with torch.no_grad():
            want = gm(y).numpy()
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-3 * max(1.0, np.abs(want).max())


# --- the command line: one line per error, exit 2 for a bad argument, 1 for a refusal ------------

@pytest.mark.parametrize("argv,code,says", [
    (["compile", "no_such_model", "--policy", "wide:0.5"], 2, "unknown zoo model 'no_such_model'"),
    (["compile", "mlp", "--policy", "wide:0.5", "--batch-size", "-3"], 2, "not a positive integer"),
    (["compile", "mlp", "--policy", "wide:0.5", "--input-shape", "2,x"], 2, "--input-shape '2,x'"),
    (["train", "no_such_recipe", "--steps", "3"], 2, "unknown recipe 'no_such_recipe'"),
    (["train", "mnist_mlp", "--steps", "0"], 2, "not a positive integer"),
    (["train", "mnist_mlp", "--steps", "2", "--data-dir", "/nonexistent/data", "--no-progress"], 1,
     "data directory"),
    (["compile", "mlp", "--policy", "wide:0.9"], 1, "iso-FLOP is unreachable"),
])
def test_cli_errors_are_one_line_with_the_right_exit_code(argv, code, says, capsys, tmp_path, monkeypatch):
    """An unknown zoo model or recipe, a missing data folder or a negative batch printed a 15-22
    line traceback; exit 2 meant both 'usage error' and 'siftc refused the model'."""
    from siftc.cli import main
    monkeypatch.chdir(tmp_path)
    try:
        got = main(argv)
    except SystemExit as e:          # argparse's own usage errors
        got = e.code
    err = capsys.readouterr().err
    assert got == code, err
    assert says in err and "Traceback" not in err


def test_cli_version(capsys):
    from siftc.cli import main
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith(f"siftc {siftc.__version__}")


def test_cli_input_shape_and_dtype_apply_to_zoo_models(capsys):
    """--input-shape was ignored for zoo models and always made float inputs (token models could
    not be compiled from the command line)."""
    from siftc.cli import main
    assert main(["flops", "gpt_tiny", "--input-shape", "1,24", "--input-dtype", "int64"]) == 0
    assert "[(1, 24)]" in capsys.readouterr().out
    assert main(["flops", "mlp", "--input-shape", "3,784"]) == 0
    assert "[(3, 784)]" in capsys.readouterr().out


# --- siftc.compile refuses bad arguments before any pass or write -------------------------------

def _mlp():
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))


def test_unknown_exporter_is_refused_before_any_pass(monkeypatch):
    """exporter='dynamoo' was refused only after every pass had run."""
    from siftc import pass_manager
    ran = []
    monkeypatch.setattr(pass_manager.PassManager, "run", lambda *a, **k: ran.append(1))
    with pytest.raises(SiftcError, match="unknown ONNX exporter 'dynamoo'"):
        siftc.compile(_mlp(), target="onnx", policy="parallel:0.5", example_inputs=(torch.randn(2, 8),),
                      exporter="dynamoo")
    assert not ran


def test_meta_device_model_gets_a_device_message():
    """A meta-device model failed deep inside with a fake-tensor device error that blamed the shapes."""
    with torch.device("meta"):
        model = _mlp()
    with pytest.raises(SiftcError, match="meta device"):
        siftc.compile(model, policy="parallel:0.5", example_inputs=(torch.randn(2, 8),))


def test_dump_dir_that_is_a_file_is_one_error_and_old_dumps_survive_a_bad_call(tmp_path):
    """A dump_dir that is a file gave a raw FileExistsError; a call refused for another argument
    must not have wiped the old dumps first."""
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(SiftcError, match="is a file"):
        siftc.compile(_mlp(), policy="parallel:0.5", example_inputs=(torch.randn(2, 8),), dump_dir=f)
    d = tmp_path / "dumps"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        siftc.compile(_mlp(), policy="parallel:0.5", example_inputs=(torch.randn(2, 8),), dump_dir=d)
    before = sorted(p.name for p in d.iterdir())
    with pytest.raises(SiftcError, match="unknown mode"):
        siftc.compile(_mlp(), policy="parallel:0.5", example_inputs=(torch.randn(2, 8),), dump_dir=d, mode="fast")
    with pytest.raises(SiftcError, match="path= is for target='onnx'"):
        siftc.compile(_mlp(), policy="parallel:0.5", example_inputs=(torch.randn(2, 8),), dump_dir=d, path="m.onnx")
    assert sorted(p.name for p in d.iterdir()) == before


# --- noise before good messages ------------------------------------------------------------------

def test_wrong_input_shape_is_one_message_without_torch_log_noise(capfd):
    """A wrong input shape first printed a 20-line fake_tensor traceback (torch's ERROR log)."""
    from siftc.core.errors import ShapeError
    with pytest.raises(ShapeError, match=r"do not fit the model at node '_0'.*\[\(2, 9\)\]"):
        siftc.compile(_mlp(), policy="parallel:0.5", example_inputs=(torch.randn(2, 9),))
    err = capfd.readouterr().err
    assert "Traceback" not in err and "fake_tensor" not in err


def test_warnings_point_at_the_users_line():
    """The fx-fallback warning pointed at siftc's own pass manager, not at the user's call."""
    import models_zoo
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        siftc.compile(models_zoo.create("gated_mlp"), policy="parallel:0.5",
                      example_inputs=models_zoo.example_inputs("gated_mlp", 2))
    capture = [w for w in caught if "torch.fx cannot trace" in str(w.message)]
    assert capture and all(w.filename == __file__ for w in capture)


def test_inference_lowering_does_not_print_torchs_csr_beta_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        siftc.compile(_mlp(), policy="sparse:0.9,stem=sparse,head=sparse", example_inputs=(torch.randn(64, 8),),
                      mode="inference")
    assert not [w for w in caught if "Sparse CSR tensor support is in beta" in str(w.message)]


def test_report_groups_left_dense_entries_that_share_a_reason():
    """20 BatchNorm lines filled the report's 'left dense' list; to_dict() keeps each entry."""
    import models_zoo
    gm = siftc.compile(models_zoo.create("resnet18_cifar"), policy="parallel:0.5,parallel_form=siftc",
                       example_inputs=models_zoo.example_inputs("resnet18_cifar", 2))
    rep = gm.siftc.report()
    norms = [d for d in rep.left_dense if d["reason"].startswith("norm:")]
    assert len(norms) == 20
    text = str(rep)
    assert "20 modules (bn1, layer1.0.bn1, layer1.0.bn2, ...)" in text and "layer4.1.bn2 |" not in text


# --- the front door under generated input: success, or one SiftcError naming the bad value -------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_KEYS = ["dist", "iso", "init", "seed", "stem", "head", "dst", "dT", "drop", "end", "drop_schedule", "width", "round",
         "pattern", "capture", "grouped", "combine", "include", "exclude", "count", "tol", "colour", "Dist"]
_VALUES = ["uniform", "erk", "exact", "nominal", "1", "0", "-1", "0.5", "1.5", "abc", "", "2:4", "block:4", "*",
           "sparse", "dense", "matmul", "all", "1e9", "nan"]
policies = st.builds(
    lambda member, s, pairs: ",".join([member + (f":{s}" if s is not None else "")]
                                      + [f"{k}={v}" for k, v in pairs]),
    st.sampled_from(["wide", "parallel", "factorized", "doped", "sparse", "dense", "wdie", ""]),
    st.one_of(st.none(), st.sampled_from(["0.5", "0.75", "0", "1", "-0.2", "x", "0.999"])),
    st.lists(st.tuples(st.sampled_from(_KEYS), st.sampled_from(_VALUES)), max_size=3))
shapes = st.lists(st.integers(0, 12), min_size=1, max_size=3)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(policy=policies, shape=shapes)
def test_front_door_succeeds_or_raises_one_siftc_error_naming_the_value(policy, shape, tmp_path):
    dump = tmp_path / f"d{abs(hash((policy, tuple(shape))))}"
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    x = torch.randn(*shape) if all(shape) else torch.empty(*shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = siftc.compile(model, policy=policy, example_inputs=(x,), dump_dir=dump)
    except SiftcError as e:
        msg = str(e)
        assert "\n" not in msg.split("  passes run before")[0].strip() or "node:" in msg
        assert not any(dump.glob("[0-9][0-9]_*.py")) or "pass '" in msg   # refused up front: nothing written
        return
    assert gm(x).shape == model(x).shape


# (the command line under generated arguments: tests/test_front_door_fuzz.py)


# --- every write path: a failure mid-write leaves the previous file intact and no temp file -------

def _fail_replace(monkeypatch):
    import os as _os

    def boom(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(_os, "replace", boom)


@pytest.mark.parametrize("what", ["dumps", "html", "summary", "onnx"])
def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temp(what, tmp_path, monkeypatch):
    from siftc.core import atomic
    from siftc.passes import export_onnx as onnx_export
    gm = _compiled("parallel:0.5")
    target = {"dumps": tmp_path / "d" / "flops.md", "html": tmp_path / "p.html",
              "summary": tmp_path / "summary.md", "onnx": tmp_path / "m.onnx"}[what]
    target.parent.mkdir(exist_ok=True)
    target.write_text("previous")

    def write():
        if what == "dumps":
            siftc.compile(_mlp(), policy="parallel:0.5", example_inputs=(torch.randn(2, 8),), dump_dir=target.parent)
        elif what == "html":
            siftc.render_html(gm, target)
        elif what == "summary":
            atomic.write_text(target, "new")
        else:
            onnx_export.save_onnx(siftc.compile(gm, target="onnx", exporter="torchscript"), target)
    _fail_replace(monkeypatch)
    with pytest.raises((OSError, SiftcError)):
        write()
    assert target.read_text() == "previous"
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]


def test_a_result_line_cut_short_by_a_kill_is_skipped_on_resume(tmp_path):
    from siftc.core import atomic
    path = tmp_path / "r.jsonl"
    atomic.append_json_line(path, {"cell": "a", "acc": 0.5})
    with open(path, "a") as f:
        f.write('{"cell": "b", "ac')                 # the run was killed mid-line
    with pytest.warns(UserWarning, match="incomplete last line"):
        assert atomic.read_json_lines(path) == [{"cell": "a", "acc": 0.5}]


def test_compile_shows_per_pass_progress_only_when_asked(monkeypatch, capsys):
    """A compile of several seconds showed no progress; progress must never reach logs or CI."""
    from siftc.core import progress
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("SIFTC_PROGRESS", raising=False)
    assert not progress.wanted()
    monkeypatch.setenv("SIFTC_PROGRESS", "1")
    seen = []
    monkeypatch.setattr(progress.PassProgress, "before", lambda self, item, gm, ctx: seen.append(item.name))
    siftc.compile(_mlp(), policy="parallel:0.5", example_inputs=(torch.randn(2, 8),))
    assert seen[:3] == ["capture", "shape-prop", "flops"] and seen[-1] == "lower-train"


def test_each_bench_has_its_own_options(capsys):
    """bench --help mixed every bench's options; a bench now refuses another bench's option."""
    from siftc.cli import main
    with pytest.raises(SystemExit) as e:
        main(["bench", "dst", "--models", "mlp"])
    assert e.value.code == 2 and "--models" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "lower", "--help"])
    out = capsys.readouterr().out
    assert "--sparsity" in out and "--steps" not in out


def test_experiment_results_go_where_asked_and_are_checked_before_training(tmp_path, monkeypatch):
    """siftc experiment smoke.yaml wrote its results into the source tree; --results puts them
    elsewhere, and a results path that cannot be written is refused before any cell trains."""
    from pathlib import Path

    from siftc.experiments import grid as experiment
    spec = Path(__file__).parents[1] / "models_zoo" / "experiments" / "smoke.yaml"
    trained = []
    monkeypatch.setattr("siftc.experiments.train.train", lambda *a, **k: trained.append(1))
    with pytest.raises(SiftcError, match="does not exist"):
        experiment.run(spec, results=tmp_path / "missing" / "r.jsonl", progress=False)
    out = experiment.run(spec, results=tmp_path / "r.jsonl", progress=False, dry_run=True)
    assert out == (tmp_path / "r.jsonl").resolve() and not trained
    assert not (spec.parent / "smoke_results.jsonl").exists()


def test_a_writer_killed_mid_write_leaves_nothing_after_the_next_write(tmp_path):
    """SIGKILL runs no exit path: the killed writer's temp file stays until the next write of the
    same file removes it (its name carries the dead pid); the previous file is intact throughout."""
    import os
    import signal
    import subprocess
    import sys
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous")
    code = ("import os, signal, sys\nfrom siftc.core import atomic\n"
            "def write(tmp):\n    open(tmp, 'wb').write(b'half')\n    os.kill(os.getpid(), signal.SIGKILL)\n"
            f"atomic.write_with({str(target)!r}, write)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL
    orphans = list(tmp_path.glob(".m.onnx.*.tmp"))
    assert len(orphans) == 1 and target.read_bytes() == b"previous"
    from siftc.core import atomic
    live = tmp_path / f".m.onnx.{os.getpid()}.x.tmp"        # a live writer's temp file is not touched
    live.write_bytes(b"busy")
    atomic.write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.onnx", live.name])
