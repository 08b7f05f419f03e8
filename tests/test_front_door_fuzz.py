"""The front door under generated bad input: every failure is one SiftcError (on the command line:
one line, exit 1 or 2, no traceback), and no earlier file is changed.

Generated: policies (every key, good and bad values), example inputs (shapes, dtypes, numpy arrays,
lists, Python values), output paths (a file, a folder under a file, a folder of someone else's
files, a folder that cannot be made), checkpoint bytes (cut short, bytes flipped, other JSON), and
command lines.
"""
import contextlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn

import siftc
from siftc import SiftcError

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))


def _snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _one_siftc_error(e: BaseException) -> None:
    assert isinstance(e, SiftcError), f"{type(e).__name__}: {e}"
    first = str(e).splitlines()[0] if str(e) else ""
    assert first.strip(), "an error must say what is wrong on its first line"


_KEYS = ["dist", "iso", "init", "seed", "stem", "head", "dst", "width", "round", "pattern", "capture", "count",
         "shortcut", "parallel_form", "lowrank", "buffers", "drop_round", "preset", "tol", "colour"]
_VALUES = ["uniform", "erk", "exact", "nominal", "reference", "layers", "member", "cifar", "pad", "refuse", "keep",
           "floor", "1", "0", "-1", "0.5", "abc", "", "2:4", "sparse", "dense", "matmul", "all", "nan"]
policies = st.builds(
    lambda member, s, pairs: ",".join([member + (f":{s}" if s is not None else "")] + [f"{k}={v}" for k, v in pairs]),
    st.sampled_from(["wide", "parallel", "factorized", "doped", "sparse", "dense", "wdie"]),
    st.one_of(st.none(), st.sampled_from(["0.5", "0.75", "0", "1", "x"])),
    st.lists(st.tuples(st.sampled_from(_KEYS), st.sampled_from(_VALUES)), max_size=3))


@SETTINGS
@given(policy=policies)
def test_generated_policies(policy):
    try:
        p = siftc.Policy.parse(policy)
    except SiftcError as e:
        _one_siftc_error(e)
        return
    assert siftc.Policy.parse(str(p)) == p


inputs = st.one_of(
    st.builds(lambda shape, dtype: torch.zeros(shape, dtype=dtype),
              st.lists(st.integers(0, 9), min_size=1, max_size=3),
              st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool, torch.float16])),
    st.builds(lambda n: np.zeros((2, n), dtype=np.float32), st.integers(1, 9)),
    st.sampled_from([[1.0] * 8, None, 3, "text", (torch.zeros(2, 8),)]))


@SETTINGS
@given(x=inputs)
def test_generated_example_inputs(x, tmp_path):
    before = _snapshot(tmp_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = siftc.compile(_mlp(), policy="sparse:0.5", example_inputs=(x,))
    except SiftcError as e:
        _one_siftc_error(e)
        assert _snapshot(tmp_path) == before
        return
    except Exception as e:
        pytest.fail(f"{type(x).__name__} {getattr(x, 'shape', '')} {getattr(x, 'dtype', '')}: "
                    f"{type(e).__name__}: {e}")
    assert isinstance(x, torch.Tensor) and gm(x).shape[-1] == 3


def _place(kind: str, root: Path) -> Path:
    """An output path of the given kind under ``root`` (made ready: files that must stay as they are)."""
    (root / "afile").write_text("keep")
    (root / "theirs").mkdir(exist_ok=True)
    (root / "theirs" / "notes.txt").write_text("keep")
    return {"new": root / "out", "file": root / "afile", "under_file": root / "afile" / "sub",
            "foreign": root / "theirs", "nested_new": root / "a" / "b" / "c"}[kind]


@SETTINGS
@given(kind=st.sampled_from(["new", "file", "under_file", "foreign", "nested_new"]),
       what=st.sampled_from(["dump_dir", "save", "onnx"]))
def test_generated_output_paths(kind, what, tmp_path_factory):
    root = tmp_path_factory.mktemp("paths")
    path = _place(kind, root)
    before = _snapshot(root)
    x = torch.randn(2, 8)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if what == "dump_dir":
                siftc.compile(_mlp(), policy="sparse:0.5", example_inputs=(x,), dump_dir=path)
            elif what == "save":
                siftc.save(siftc.compile(_mlp(), policy="sparse:0.5", example_inputs=(x,)), path)
            else:
                siftc.compile(_mlp(), target="onnx", policy="sparse:0.5", example_inputs=(x,), path=path,
                              exporter="torchscript")
    except SiftcError as e:
        _one_siftc_error(e)
        assert _snapshot(root) == before, "a refused write changed an earlier file"
        assert not [p for p in root.rglob(".*")], "a refused write left a temp file"
        return
    after = _snapshot(root)
    replaced = {"afile"} if (what, kind) == ("onnx", "file") else set()    # an ONNX file is replaced whole
    for name, data in before.items():          # what was there stays, beside the new output
        assert name in replaced or after.get(name) == data, name
    allowed = {"dump_dir": {"new", "nested_new", "foreign"}, "save": {"new", "nested_new"}, "onnx": {"new", "file"}}
    assert kind in allowed[what], f"{what} into a {kind} path should have been refused"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt") / "c"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        siftc.save(siftc.compile(_mlp(), policy="sparse:0.5", example_inputs=(torch.randn(2, 8),)), d)
    return d


@SETTINGS
@given(file=st.sampled_from(["siftc.json", "model.safetensors"]), cut=st.floats(0.0, 0.99),
       flip=st.one_of(st.none(), st.integers(0, 10_000)), other=st.sampled_from([None, "[]", "3", '{"format": 1}']))
def test_generated_checkpoint_bytes(checkpoint, file, cut, flip, other, tmp_path_factory):
    d = tmp_path_factory.mktemp("broken") / "c"
    d.mkdir()
    for f in checkpoint.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    data = bytearray((d / file).read_bytes())
    if other is not None and file == "siftc.json":
        data = bytearray(other.encode())
    elif flip is not None:
        data[flip % len(data)] ^= 0xFF
    else:
        data = data[:int(len(data) * cut)]
    (d / file).write_bytes(bytes(data))
    try:
        siftc.load(d)
    except SiftcError as e:
        _one_siftc_error(e)
        return
    # a flipped byte inside a JSON string can leave valid JSON that still loads: same SHA-256 binding
    assert file == "siftc.json" and other is None


@settings(max_examples=30, deadline=None)
@given(argv=st.lists(st.sampled_from(["compile", "flops", "html", "mlp", "nope:factory", "os:getcwd",
                                      "--policy", "wide:0.5", "parallel:2", "--batch-size", "0", "3",
                                      "--input-shape", "2,784", "2,x", "--onnx", "/nonexistent/m.onnx", "--save",
                                      "/proc/nope", "--dump-dir", "/proc/x", "--json"]),
                     min_size=1, max_size=6))
def test_generated_command_lines_print_one_line(argv):
    from siftc.cli import main
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    text = err.getvalue()
    assert code in (0, 1, 2), code
    assert "Traceback" not in text
    if code == 1:
        assert text.count("siftc: error:") == 1 and len(text.strip().splitlines()) == 1, text


def test_a_truncated_checkpoint_json_is_a_checkpoint_error(checkpoint, tmp_path):
    d = tmp_path / "c"
    d.mkdir()
    for f in checkpoint.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    text = (d / "siftc.json").read_text()
    (d / "siftc.json").write_text(text[: len(text) // 2])
    with pytest.raises(siftc.CheckpointError, match="siftc.json is not valid JSON"):
        siftc.load(d)


def test_a_failed_compile_keeps_the_earlier_dump(tmp_path):
    """14 files of a good dump became 7 + FAILED.txt: the failed compile's dump now goes beside
    the earlier one (dump_dir.failed/), which stays as it was."""
    d = tmp_path / "dumps"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        siftc.compile(_mlp(), policy="parallel:0.5", example_inputs=(torch.randn(2, 8),), dump_dir=d)
    good = _snapshot(d)
    with pytest.raises(siftc.ShapeError, match=r"dumps of this compile: .*dumps.failed/ \(FAILED.txt\); the earlier "
                                               r"dump in .*dumps/ is kept"):
        siftc.compile(_mlp(), policy="parallel:0.5", example_inputs=(torch.randn(2, 9),), dump_dir=d)
    assert _snapshot(d) == good
    assert (tmp_path / "dumps.failed" / "FAILED.txt").exists()
    assert sorted(os.listdir(tmp_path)) == ["dumps", "dumps.failed"]


def test_dump_dir_that_cannot_be_made_is_refused_up_front(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(siftc.UsageError, match="is a file, so the folder cannot be made"):
        siftc.compile(_mlp(), policy="sparse:0.5", example_inputs=(torch.randn(2, 8),), dump_dir=tmp_path / "f" / "d")
    assert json.dumps(sorted(os.listdir(tmp_path))) == '["f"]'
