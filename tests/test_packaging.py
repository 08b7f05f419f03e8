"""What users install is what CI tests: the wheel holds every module and data file, the version
lives in one place, and the command line answers --version and --help without importing torch."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked_tree(dest: Path) -> None:
    """The files git tracks (and untracked ones it does not ignore), copied to ``dest``: the wheel
    is built from what a clone holds, never from a stale build/ or egg-info in the working tree."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode:
        pytest.skip("not a git checkout: the wheel test builds from the tracked files")
    for name in out.stdout.splitlines():
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(src.read_bytes())


def _expected(rel: str) -> "str | None":
    """Where a source file must be in the wheel (None: it stays in the repository)."""
    parts = rel.split("/")
    if parts[0] == "passes" and (rel.endswith(".py") or rel == "passes/README.md"):
        return "siftc/" + rel
    if parts[0] == "siftc" and rel.endswith(".py"):
        return rel
    if parts[0] == "models_zoo" and rel.endswith(".py") and parts[1] not in ("results", "experiments"):
        return rel
    if parts[:2] == ["models_zoo", "experiments"] and rel.endswith(".yaml"):
        return rel
    return None


def test_the_wheel_holds_every_module_and_data_file(tmp_path):
    tree, out = tmp_path / "tree", tmp_path / "dist"
    tree.mkdir()
    _tracked_tree(tree)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(tree)], check=True, capture_output=True)
    wheel, = out.glob("siftc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {w for f in tree.rglob("*") if f.is_file() and (w := _expected(f.relative_to(tree).as_posix()))}
    assert "siftc/integrations/hf_trainer.py" in wanted and "siftc/passes/" + "verify.py" in wanted   # (installed path)
    assert wanted <= names, sorted(wanted - names)
    assert not any(n.startswith(("passes/", "tests/", "models_zoo/results/")) for n in names)
    from siftc import __version__
    assert wheel.name.startswith(f"siftc-{__version__}-")


def test_version_and_help_do_not_import_torch():
    code = ("import sys\nfrom siftc.cli import main\n"
            "for argv in (['--version'], ['--help'], ['compile', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO TORCH')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip().endswith("NO TORCH"), out.stdout[-300:] + out.stderr[-300:]
    from siftc import __version__
    assert f"siftc {__version__} (torch " in out.stdout
