"""DST checkpoints resume bit-identically in a fresh process; 2-process DDP (gloo) keeps masks equal."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import dst_worker as W
import siftc

HERE = Path(__file__).parent


def test_resume_in_fresh_process_is_bit_identical(tmp_path):
    gm, opt = W.build()
    dst = siftc.DST(gm, opt, total_steps=W.TOTAL)
    W.run(gm, opt, dst, 0, W.TOTAL)
    straight = W.snapshot(gm)
    assert dst.updates == 4

    gm, opt = W.build()
    dst = siftc.DST(gm, opt, total_steps=W.TOTAL)
    W.run(gm, opt, dst, 0, 5)                           # stop mid-way, before update step 6
    ckpt, out = tmp_path / "ckpt.pt", tmp_path / "final.pt"
    torch.save({"model": gm.state_dict(), "opt": opt.state_dict(), "dst": dst.state_dict()}, ckpt)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, str(HERE / "dst_worker.py"), str(ckpt), str(out), str(W.TOTAL)],
                   check=True, env=env)
    resumed = torch.load(out, weights_only=True)
    assert straight.keys() == resumed.keys()
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k
    assert any(k.endswith("weight_mask") for k in straight)


def _same_on_ranks_and_as_one_process(tmp_path) -> dict:
    """Both ranks' masks equal after every step (updates included), and the final state equals
    one process run on the same global batches; returns rank 0's record."""
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert r0["updates"] == r1["updates"] == 4
    for m0, m1 in zip(r0["masks"], r1["masks"]):
        assert all(torch.equal(m0[q], m1[q]) for q in m0)
    gm, opt = W.build()
    dst = siftc.DST(gm, opt, total_steps=W.TOTAL)
    W.run(gm, opt, dst, 0, W.TOTAL)
    for k, v in W.snapshot(gm).items():
        if v.dtype == torch.bool:
            assert torch.equal(v, r0["state"][k]), k
        elif v.is_floating_point():
            assert torch.allclose(v, r0["state"][k], atol=1e-5, rtol=1e-4), k
    return r0


def test_ddp_two_processes_masks_equal_and_match_single_process(tmp_path):
    mp.spawn(W.ddp_main, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    _same_on_ranks_and_as_one_process(tmp_path)


@pytest.mark.parametrize("per_module", [False, True], ids=["root", "per-module"])
def test_fsdp2_two_processes_masks_equal_and_match_single_process(tmp_path, per_module):
    """siftc.DST on a model sharded with FSDP2's fully_shard (gloo, CPU): masks stay full and
    identical on every rank, each rank masks its own weight, gradient and momentum shards, and
    RigL ranks the global weights and the globally averaged dense gradient, so the run equals
    one process on the global batches. (Before: masked_fill_ 'got mixed torch.Tensor and DTensor'.)"""
    mp.spawn(W.fsdp_main, args=(2, str(tmp_path / "init"), str(tmp_path), per_module), nprocs=2, join=True)
    r0 = _same_on_ranks_and_as_one_process(tmp_path)
    assert r0["sharded"] == "DTensor"
    for q, mask in r0["masks"][-1].items():
        assert not torch.any(r0["state"][f"{q}.weight"][~mask] != 0), q
        assert not torch.any(r0["momentum"][q][~mask] != 0), q

