"""Golden dumps: the pass-by-pass dumps of two zoo models, compared byte for byte.

Regenerate after an intended change with ``pytest tests/test_golden.py --regen-golden`` and
review the diff of tests/golden/ like code.
"""
from pathlib import Path

import pytest

import models_zoo
import siftc

GOLDEN = Path(__file__).parent / "golden"
CASES = {"mlp_parallel": ("mlp", "parallel:0.75"), "resnet18_cifar_factorized": ("resnet18_cifar", "factorized:0.5"),
         "gpt_tiny_wide": ("gpt_tiny", "wide:0.5")}


def _compile(name, policy, directory):
    model = models_zoo.create(name)
    siftc.compile(model, policy=policy, example_inputs=models_zoo.example_inputs(name, 2), dump_dir=str(directory))


def _files(directory):
    # stats.json and viewer.json hold timings: the only files that differ between runs
    return {p.name: p.read_text() for p in sorted(Path(directory).iterdir())
            if p.name not in ("stats.json", "viewer.json")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_dumps(case, tmp_path, regen_golden):
    name, policy = CASES[case]
    _compile(name, policy, tmp_path)
    got = _files(tmp_path)
    want_dir = GOLDEN / case
    if regen_golden:
        want_dir.mkdir(parents=True, exist_ok=True)
        for old in want_dir.iterdir():
            old.unlink()
        for fname, text in got.items():
            (want_dir / fname).write_text(text)
    want = _files(want_dir)
    assert sorted(got) == sorted(want)
    for fname in want:
        assert got[fname] == want[fname], f"{case}/{fname} differs from the golden file"
    assert (tmp_path / "stats.json").exists() and (tmp_path / "viewer.json").exists()


def test_two_compiles_give_identical_dumps(tmp_path):
    _compile("mlp", "doped:0.5", tmp_path / "a")
    _compile("mlp", "doped:0.5", tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == b
    expected = ["00_input.py", "01_capture.py", "02_shape_prop.py", "03_flops.py", "04_roles.py", "05_couple.py",
                "06_substitute.py", "07_masks.py", "08_verify.py", "09_lower_train.py", "flops.md", "pipeline.txt"]
    assert sorted(a) == expected
    header = a["06_substitute.py"].splitlines()
    assert header[0].startswith("# siftc dump 06: pass 'substitute'")
    assert any(line.startswith("# nodes: ") and "(+" in line for line in header)
    assert any(line.startswith("# FLOPs: before ") for line in header)


def test_dump_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SIFTC_DUMP_DIR", str(tmp_path))
    model = models_zoo.create("mlp")
    siftc.compile(model, policy="sparse:0.5", example_inputs=models_zoo.example_inputs("mlp"))
    assert (tmp_path / "pipeline.txt").exists() and (tmp_path / "flops.md").exists()
