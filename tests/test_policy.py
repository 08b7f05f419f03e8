"""Policy strings: parse, print back, and reject bad input with the allowed values."""
import pytest
from hypothesis import given, strategies as st

import siftc
from siftc import Policy, PolicyError


@pytest.mark.parametrize("text", ["parallel:0.75", "factorized:0.9,dist=erk", "dense", "doped:0.5,iso=nominal,seed=3",
                                  "sparse:0.9,tol=0.01,init=scaled,stem=sparse,head=sparse",
                                  "parallel:0.9,dst=rigl,dT=500,drop=0.5,end=0.8,drop_schedule=constant",
                                  "wide:0.75,width=reference,round=1", "wide:0.9,stem=sparse,round=16"])
def test_round_trip_examples(text):
    p = Policy.parse(text)
    assert str(p) == text
    assert Policy.parse(str(p)) == p


@given(member=st.sampled_from(["sparse", "wide", "parallel", "factorized", "doped"]),
       s=st.floats(min_value=0.01, max_value=0.99, allow_nan=False),
       dist=st.sampled_from(["uniform", "erk"]), iso=st.sampled_from(["exact", "nominal"]),
       seed=st.integers(0, 10_000), tol=st.floats(min_value=1e-4, max_value=0.5))
def test_round_trip_property(member, s, dist, iso, seed, tol):
    p = Policy(member=member, sparsity=s, dist=dist, iso=iso, seed=seed, tol=tol)
    assert Policy.parse(str(p)) == p


@pytest.mark.parametrize("text,needle", [
    ("wide2:0.5", "allowed members: dense, sparse, wide, parallel, factorized, doped"),
    ("wide:0.5,round=0", "round=0 must be an integer >= 1"),
    ("wide:0.5,width=double", "allowed values: nominal, reference"),
    ("parallel:1.0", "0 <= sparsity < 1"),
    ("parallel:-0.1", "0 <= sparsity < 1"),
    ("parallel:abc", "is not a number"),
    ("parallel", "needs a sparsity"),
    ("parallel:0.5,colour=red", "allowed keys: dist, iso, tol, init, seed, stem, head, dst, dT, drop, end, drop_schedule, width, round"),
    ("parallel:0.5,dist=gaussian", "allowed values: uniform, erk"),
    ("parallel:0.5,seed=x", "not an integer"),
    ("parallel:0.5,dist", "must be key=value"),
    ("parallel:0.5,dist=erk,dist=uniform", "given twice"),
    ("parallel:0.5,dst=prune", "allowed values: static, set, rigl"),
    ("parallel:0.5,dT=0", "dT=0 must be an integer >= 1"),
    ("parallel:0.5,drop=1.5", "0 <= drop < 1"),
])
def test_bad_policies_raise_value_error(text, needle):
    with pytest.raises(ValueError) as err:
        Policy.parse(text)
    assert isinstance(err.value, PolicyError)
    assert needle in str(err.value)


def test_compile_rejects_bad_policy_and_target():
    import torch
    from torch import nn
    m = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="allowed members"):
        siftc.compile(m, policy="nope:0.5", example_inputs=(torch.randn(1, 4),))
    with pytest.raises(ValueError, match="allowed targets: cpu, cuda"):
        siftc.compile(m, target="tpu", policy="dense", example_inputs=(torch.randn(1, 4),))
    with pytest.raises(ValueError, match="needs example_inputs"):
        siftc.compile(m, policy="dense")
