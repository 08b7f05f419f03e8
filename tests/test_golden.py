"""Golden dumps: the pass-by-pass dumps of three zoo models, compared byte for byte.

Each case is stored as its per-pass changes (tests/golden/<case>.txt): the input dump in full,
then each pass's dump as a unified diff against the one before it, then flops.md and
pipeline.txt. Regenerate after an intended change with ``pytest tests/test_golden.py
--regen-golden`` and review the diff of tests/golden/ like code.
"""
import difflib
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


def golden_text(files: dict) -> str:
    """The dumps as their changes: the first pass file in full, every later one as a diff."""
    out, previous = [], None
    for fname in sorted(files):
        text = files[fname]
        if previous is None or not fname[:2].isdigit():
            out += [f"=== {fname} (full)\n", text]
        else:
            diff = difflib.unified_diff(files[previous].splitlines(keepends=True), text.splitlines(keepends=True),
                                        previous, fname, n=1)
            out += [f"=== {fname} (changes from {previous})\n", *diff]
        if fname[:2].isdigit():
            previous = fname
        if out and not out[-1].endswith("\n"):
            out.append("\n")
    return "".join(out)


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_dumps(case, tmp_path, regen_golden):
    name, policy = CASES[case]
    _compile(name, policy, tmp_path)
    got = golden_text(_files(tmp_path))
    want_file = GOLDEN / f"{case}.txt"
    if regen_golden:
        want_file.write_text(got)
    want = want_file.read_text()
    if got != want:
        diff = "".join(list(difflib.unified_diff(want.splitlines(keepends=True), got.splitlines(keepends=True),
                                                 "golden", "now", n=2))[:80])
        pytest.fail(f"the dumps of {case} differ from tests/golden/{case}.txt:\n{diff}")
    assert (tmp_path / "stats.json").exists() and (tmp_path / "viewer.json").exists()


def test_golden_text_round_trips_its_changes():
    """The stored form loses nothing: applying the diffs gives back every file."""
    files = {"00_input.py": "a\nb\nc\n", "01_capture.py": "a\nB\nc\n", "02_flops.py": "a\nB\nc\nd\n",
             "pipeline.txt": "capture,flops\n"}
    text = golden_text(files)
    assert "=== 01_capture.py (changes from 00_input.py)" in text and "-b\n+B\n" in text
    assert golden_text({**files, "02_flops.py": "a\nB\nc\ne\n"}) != text


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


def test_a_pass_that_changes_nothing_is_one_line(tmp_path):
    """print-after-change: couple is a no-op unless the member is wide, so its file is one line."""
    _compile("mlp", "parallel:0.75", tmp_path)
    text = (tmp_path / "05_couple.py").read_text()
    assert text.splitlines()[-1] == ("# unchanged: the graph code, node table and weight modules are those of "
                                     "04_roles.py")
    assert "def forward" not in text and "def forward" in (tmp_path / "06_substitute.py").read_text()


def test_a_failing_pass_leaves_a_reproducer(tmp_path):
    from siftc.passes import register
    if "fail-test" not in siftc.passes.PASSES:
        @register("fail-test", "test pass that always fails", kind="analysis")
        def fail(gm, ctx):
            raise siftc.SiftcError("planned failure")
    model = models_zoo.create("mlp")
    with pytest.raises(siftc.SiftcError, match="planned failure"):
        siftc.compile(model, policy="parallel:0.75", example_inputs=models_zoo.example_inputs("mlp", 2),
                      dump_dir=str(tmp_path), pipeline="capture,shape-prop,flops,fail-test")
    failed = (tmp_path / "FAILED.txt").read_text()
    assert "pass 'fail-test' failed after: capture, shape-prop, flops" in failed
    assert "the graph it received: 03_flops.py (shown in full in 0" in failed
    assert "pipeline='capture,shape-prop,flops,fail-test'" in failed and "planned failure" in failed
    assert (tmp_path / "03_flops.py").exists() and not (tmp_path / "04_fail_test.py").exists()
