"""The one-way import rule between siftc's layers (docs/architecture.md), checked on the source.

Every ``import`` statement in siftc/, passes/ and models_zoo/ (also those inside functions) is
resolved to a module and its layer; a module may import only from its own layer or below.
Experiment-only libraries (matplotlib, yaml, PIL) are imported only by the experiments layer.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (layer name, module prefixes), bottom first
LAYERS = [
    ("core", ["siftc.core", "siftc"]),
    ("passes", ["siftc.passes"]),
    ("front door", ["siftc.compiler", "siftc.handle", "siftc.reporting", "siftc.pass_manager", "siftc.recorder",
                    "siftc.dumps", "siftc.viewer"]),
    ("runtime", ["siftc.runtime"]),
    ("experiments", ["siftc.experiments", "siftc.integrations", "models_zoo"]),
    ("command line", ["siftc.cli"]),
]
EXPERIMENT_LIBRARIES = {"matplotlib", "yaml", "PIL"}


def layer_of(module: str):
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (i, p)
    return None if best is None else best[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "passes":
        parts = ["siftc", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def sources():
    for folder in ("siftc", "passes", "models_zoo"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def imports(path: Path):
    """(line, imported module) of every import statement, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for a in node.names:       # `from pkg import submodule` imports the submodule
                yield node.lineno, f"{base}.{a.name}" if layer_of(f"{base}.{a.name}") is not None else base


def test_every_source_module_has_a_layer():
    missing = [module_name(p) for p in sources() if layer_of(module_name(p)) is None]
    assert not missing, f"modules without a layer in tests/test_layers.py LAYERS: {missing}"


def test_imports_point_down():
    broken = []
    for path in sources():
        me = module_name(path)
        mine = layer_of(me)
        for line, target in imports(path):
            top = target.split(".")[0]
            if top in EXPERIMENT_LIBRARIES and mine < layer_of("siftc.experiments"):
                broken.append(f"{path.relative_to(ROOT)}:{line} ({LAYERS[mine][0]}) imports {target}, "
                              f"an experiments-only library")
            theirs = layer_of(target) if top in ("siftc", "models_zoo") else None
            if theirs is not None and theirs > mine:
                broken.append(f"{path.relative_to(ROOT)}:{line} ({LAYERS[mine][0]}) imports {target} "
                              f"({LAYERS[theirs][0]})")
    assert not broken, "imports against the layer order:\n" + "\n".join(broken)


def test_the_rule_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a core module importing the runtime is reported."""
    fake = ROOT / "siftc" / "core" / "_layer_probe.py"
    monkeypatch.setattr(sys.modules[__name__], "sources", lambda: [fake])
    fake.write_text("from siftc.runtime.dst import DST\nimport matplotlib\n")
    try:
        with pytest.raises(AssertionError, match=r"_layer_probe.py:1 \(core\) imports siftc.runtime.dst.DST"):
            test_imports_point_down()
    finally:
        fake.unlink()


def _run(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ""})


def test_compiling_loads_no_experiment_dependency(tmp_path):
    code = ("import sys, torch, siftc\n"
            "m = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))\n"
            "gm = siftc.compile(m, policy='parallel:0.5', example_inputs=(torch.randn(2, 8),))\n"
            "str(siftc.report(gm))\n"
            "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('models_zoo', 'matplotlib', 'yaml', 'PIL')"
            " or k.startswith(('siftc.experiments', 'siftc.runtime', 'siftc.cli')))\n"
            "print('LOADED', bad)\n")
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED []" in done.stdout, done.stdout


def test_importing_one_pass_loads_no_runtime(tmp_path):
    done = _run("import sys, siftc.passes.flops\n"
                "print('LOADED', sorted(k for k in sys.modules if k.startswith(('siftc.runtime', 'siftc.viewer', "
                "'siftc.experiments', 'siftc.compiler'))))", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED []" in done.stdout, done.stdout


def test_no_top_level_passes_package(tmp_path):
    """passes/ installs as siftc.passes: outside the source tree `import passes` finds nothing."""
    done = _run("import siftc.passes\nimport passes", tmp_path)
    assert "No module named 'passes'" in done.stderr, (done.stdout, done.stderr[-1000:])


def test_only_the_mask_api_knows_how_a_mask_is_stored():
    """What is masked is asked of siftc/core/mask_api.py (masked_weights, mask_of, is_masked,
    add_mask): no other module of siftc/ or passes/ spells the mask buffer's name, so the
    representation can change in one place (13 files rediscovered it before)."""
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for f in sorted([*(root / "siftc").rglob("*.py"), *(root / "passes").rglob("*.py")]):
        if f.name == "mask_api.py":
            continue
        text = f.read_text()
        for i, line in enumerate(text.splitlines(), 1):
            if "weight_mask" in line:
                offenders.append(f"{f.relative_to(root)}:{i}")
    assert not offenders, offenders
