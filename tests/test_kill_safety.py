"""A multi-file artefact is replaced whole: a SIGKILL at any instant of ``siftc.save`` leaves the
previous checkpoint or the new one, loadable, and the next write removes what the killed writer
left. (A checkpoint is two files bound by a SHA-256: rewritten in place, a kill between them lost
the old one.)"""
import multiprocessing as mp
import os
import random
import signal
import time
import warnings

import pytest
import torch
from torch import nn

import siftc


def _model(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 2048), nn.ReLU(), nn.Linear(2048, 512),
                          nn.ReLU(), nn.Linear(512, 10))
    x = torch.randn(4, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = siftc.compile(model, policy=f"wide:0.5,seed={seed}", example_inputs=(x,))
    return gm.eval(), x


def _writer(source, target, ready) -> None:
    """A process that saves the model in ``source`` over ``target`` again and again."""
    import siftc
    gm = siftc.load(source)
    ready.set()
    while True:
        siftc.save(gm, target)


@pytest.mark.skipif("forkserver" not in mp.get_all_start_methods(), reason="needs the forkserver start method")
def test_a_killed_save_leaves_the_old_or_the_new_checkpoint(tmp_path):
    old, x = _model(0)
    new, _ = _model(1)
    with torch.no_grad():
        outputs = {"old": old(x), "new": new(x)}
    ckpt, source = tmp_path / "ckpt", tmp_path / "source"
    siftc.save(new, source)
    siftc.save(old, ckpt)
    start = time.perf_counter()
    siftc.save(old, ckpt)
    took = time.perf_counter() - start         # one save of ~40 MB: the window to kill in
    # writers fork from a server that has imported torch but run nothing (a fork of this process
    # would inherit its started thread pools and can hang)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["siftc", "torch"])
    rng = random.Random(0)
    seen = {"old": 0, "new": 0}
    for i in range(16):
        ready = ctx.Event()
        writer = ctx.Process(target=_writer, args=(str(source), str(ckpt), ready), daemon=True)
        writer.start()
        assert ready.wait(120), "the writer did not start"
        time.sleep(rng.uniform(0.0, 1.5 * took))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        back = siftc.load(ckpt).eval()
        with torch.no_grad():
            y = back(x)
        which = [k for k, v in outputs.items() if torch.equal(y, v)]
        assert len(which) == 1, f"kill {i}: the checkpoint is neither the old nor the new model"
        seen[which[0]] += 1
        if which[0] == "new":                  # start the next round from the old one again
            siftc.save(old, ckpt)
    assert seen["old"] and seen["new"], seen   # kills landed before and after the swap
    siftc.save(old, ckpt)                      # the next write cleans what killed writers left
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "source"]
    assert sorted(os.listdir(ckpt)) == ["model.safetensors", "siftc.json"]


def test_save_refuses_a_file_and_a_folder_of_other_files(tmp_path):
    gm, _ = _model(0)
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(siftc.CheckpointError, match="afile is a file, not a folder"):
        siftc.save(gm, tmp_path / "afile")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(siftc.CheckpointError, match=r"files that are not a siftc checkpoint's \(notes.txt\)"):
        siftc.save(gm, tmp_path / "mine")
    assert (tmp_path / "afile").read_text() == "not a folder" and os.listdir(tmp_path / "mine") == ["notes.txt"]
