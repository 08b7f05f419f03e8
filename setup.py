"""Package discovery (pyproject.toml holds everything else): every folder of Python code under
siftc/ and models_zoo/ (some are namespace packages, without an __init__.py), models_zoo/experiments/
for its YAML specs, and passes/ installed as siftc.passes: found by walking the tree rather than
listed by hand, so a new subpackage cannot be left out of the wheel (tests/test_packaging.py builds
the wheel and checks that it holds every module)."""
from setuptools import find_namespace_packages, setup

_SKIP = ["*__pycache__*", "models_zoo.results*", "models_zoo.experiments.diagnostics*", "*.egg-info*"]
packages = find_namespace_packages(include=["siftc", "siftc.*", "models_zoo", "models_zoo.*"], exclude=_SKIP)
passes = ["siftc.passes"] + [f"siftc.passes.{p}" for p in find_namespace_packages("passes", exclude=_SKIP)]
setup(packages=packages + passes,
      package_dir={p: p.replace("siftc.passes", "passes", 1).replace(".", "/") for p in passes})
