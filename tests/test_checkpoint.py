"""siftc.save / siftc.load: a compiled model as data (safetensors + JSON), reloaded without its
source, compressed where masked, resumable under DST, and refused where it cannot be data."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import models_zoo
import siftc
from conftest import resume_after_checkpoint
from siftc.runtime import checkpoint


def _out(gm, x):
    gm.eval()
    with torch.no_grad():
        return torch.utils._pytree.tree_leaves(gm(*x))[0]


@pytest.mark.parametrize("name,policy", [("resnet18_cifar", "parallel:0.75"), ("gpt_tiny", "wide:0.75"),
                                         ("resnet18_cifar", "factorized:0.75"), ("mobilenet_v2", "doped:0.75"),
                                         ("vit_tiny", "sparse:0.9"), ("gpt2_tiny", "wide:0.75,capture=export")])
def test_save_load_round_trip(tmp_path, name, policy):
    torch.manual_seed(0)
    x = models_zoo.example_inputs(name, 2)
    gm = siftc.compile(models_zoo.create(name), policy=policy, example_inputs=x)
    siftc.save(gm, tmp_path)
    back = siftc.load(tmp_path)
    assert torch.equal(_out(gm, x), _out(back, x))
    assert str(siftc.report(back)) == str(siftc.report(gm))
    masks, loaded = gm.siftc.masks(), back.siftc.masks()
    assert masks.keys() == loaded.keys() and all(torch.equal(masks[q], loaded[q]) for q in masks)
    assert [n for n, _ in gm.named_parameters()] == [n for n, _ in back.named_parameters()]
    assert str(back.siftc.policy) == str(gm.siftc.policy) and len(back.siftc.passes) == len(gm.siftc.passes)


def test_the_policy_loads_with_every_key_as_saved_not_under_todays_defaults(tmp_path):
    """siftc.json records every policy key: a checkpoint of yesterday's default Sparse Parallel
    (the paper's form) must not be named by today's default (the CIFAR form) once loaded. One
    written before that record loads with a warning that says its policy is read under today's
    defaults."""
    x = (torch.randn(2, 8),)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    gm = siftc.compile(model, policy="parallel:0.75,parallel_form=imagenet", example_inputs=x)
    siftc.save(gm, tmp_path)
    meta_path = tmp_path / "siftc.json"
    meta = json.loads(meta_path.read_text())
    assert meta["state"]["policy_keys"]["parallel_form"] == "imagenet" and meta["state"]["policy_keys"]["count"] == "matmul"
    meta["state"]["policy"] = "parallel:0.75"        # as yesterday's siftc wrote it: imagenet was the default
    meta_path.write_text(json.dumps(meta))
    back = siftc.load(tmp_path)
    assert back.siftc.policy == gm.siftc.policy and back.siftc.policy.parallel_form == "imagenet"
    del meta["state"]["policy_keys"]                   # a checkpoint from before the record
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="read under today's defaults.*parallel_form.*Save it again"):
        old = siftc.load(tmp_path)
    assert old.siftc.policy.parallel_form == "cifar"   # what the warning is about
    assert torch.equal(_out(old, x), _out(gm, x))      # the graph and weights are as saved


def test_load_in_a_fresh_process_without_the_models_source_and_without_pickle(tmp_path):
    """The loading process imports neither models_zoo nor the model's module, and pickle is
    disabled in it: everything comes from JSON and safetensors."""
    torch.manual_seed(0)
    x = models_zoo.example_inputs("resnet18_cifar", 2)
    gm = siftc.compile(models_zoo.create("resnet18_cifar"), policy="wide:0.75", example_inputs=x)
    siftc.save(gm, tmp_path / "ckpt")
    torch.save(x[0], tmp_path / "x.pt")
    torch.save(_out(gm, x), tmp_path / "y.pt")
    script = textwrap.dedent(f"""
        import pickle, sys, torch
        x, y = torch.load({str(tmp_path / 'x.pt')!r}), torch.load({str(tmp_path / 'y.pt')!r})
        def refuse(*a, **k):
            raise AssertionError("pickle used while loading")
        pickle.loads = pickle.load = refuse
        torch.load = refuse
        import siftc
        gm = siftc.load({str(tmp_path / 'ckpt')!r})
        assert "models_zoo" not in sys.modules
        gm.eval()
        with torch.no_grad():
            assert torch.equal(gm(x), y)
        gm.train()
        opt = torch.optim.SGD(gm.parameters(), lr=0.1, momentum=0.9)
        dst = siftc.DST(gm, opt, total_steps=4, method="rigl", dT=2)
        for _ in range(4):
            torch.nn.functional.cross_entropy(gm(x), torch.tensor([1, 2])).backward()
            opt.step(); dst.step(); opt.zero_grad()
        for q, m in gm.siftc.masks().items():
            w = gm.get_submodule(q).weight
            assert not torch.any(w[~m] != 0), q
        assert dst.updates == 1
        print("OK")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=str(tmp_path), timeout=300)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-2000:]


def test_dst_resumes_on_a_loaded_model_bit_identically(tmp_path):
    """Train 4 steps under RigL, save the model (siftc.save) and DST + optimizer state
    (torch.save, weights_only), train 4 more; a loaded copy resumed from the same point matches."""
    torch.manual_seed(0)
    x = models_zoo.example_inputs("mlp", 8)
    y = torch.randint(0, 10, (8,))
    gm = siftc.compile(models_zoo.create("mlp"), policy="wide:0.9,stem=sparse,dst=rigl,dT=2", example_inputs=x)
    dst, back, dst2 = resume_after_checkpoint(gm, lambda m: F.cross_entropy(m(*x), y), siftc.save, siftc.load,
                                              tmp_path / "m", total_steps=12, before=4)
    assert dst2.updates == dst.updates >= 3
    a, b = gm.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_masked_weights_are_stored_compressed(tmp_path):
    """At s = 0.9 the directory is at most a quarter of the dense-shaped state_dict file
    (float weights with zeros, bool masks), and loads back to the exact tensors."""
    torch.manual_seed(0)
    x = models_zoo.example_inputs("mlp", 2)
    gm = siftc.compile(models_zoo.create("mlp", hidden=(512, 512)), policy="wide:0.9,stem=sparse,head=sparse",
                       example_inputs=x)
    siftc.save(gm, tmp_path / "m")
    torch.save(gm.state_dict(), tmp_path / "dense.pt")
    size = sum(f.stat().st_size for f in (tmp_path / "m").iterdir())
    ratio = size / (tmp_path / "dense.pt").stat().st_size
    assert ratio <= 0.25, ratio
    a, b = gm.state_dict(), siftc.load(tmp_path / "m").state_dict()
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def test_bit_packing_round_trips():
    g = torch.Generator().manual_seed(0)
    for shape in ((1,), (7,), (8,), (3, 5, 7), (64, 65)):
        m = torch.rand(shape, generator=g) < 0.3
        bits = checkpoint.pack_bits(m)
        assert bits.dtype == torch.uint8 and bits.numel() == (m.numel() + 7) // 8
        assert torch.equal(checkpoint.unpack_bits(bits, shape), m)


def test_a_weight_nonzero_where_masked_is_stored_dense_not_lost(tmp_path):
    """Values + bits are used only when the weight really is zero off its mask (checked)."""
    gm = siftc.compile(models_zoo.create("mlp"), policy="sparse:0.75", example_inputs=models_zoo.example_inputs("mlp", 2))
    q, mask = next(iter(gm.siftc.masks().items()))
    with torch.no_grad():
        gm.get_submodule(q).weight[~mask] = 0.5
    siftc.save(gm, tmp_path)
    meta = json.loads((tmp_path / "siftc.json").read_text())
    assert meta["tensors"][f"{q}.weight"]["stored"] == "dense"
    assert torch.equal(siftc.load(tmp_path).get_submodule(q).weight, gm.get_submodule(q).weight)


class _Custom(nn.Module):
    def forward(self, x):
        return x * 2


class _WithCustomLeaf(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.custom = _Custom()

    def forward(self, x):
        return self.custom(self.fc(x))


def test_refusals_name_what_cannot_be_data(tmp_path):
    x = (torch.randn(2, 8),)
    gm = siftc.compile(_WithCustomLeaf(), policy="sparse:0.5,head=sparse", example_inputs=x, leaf_modules=(_Custom,))
    with pytest.raises(siftc.CheckpointError, match="module 'custom' is a .*_Custom, not a torch.nn class"):
        siftc.save(gm, tmp_path / "a")
    with pytest.raises(siftc.CheckpointError, match="GraphModule returned by siftc.compile"):
        siftc.save(nn.Linear(2, 2), tmp_path / "b")
    with pytest.raises(siftc.CheckpointError, match="siftc.json is missing"):
        siftc.load(tmp_path / "nothing")


def test_files_that_do_not_belong_together_are_refused(tmp_path):
    gm = siftc.compile(models_zoo.create("mlp"), policy="sparse:0.75", example_inputs=models_zoo.example_inputs("mlp", 2))
    siftc.save(gm, tmp_path / "a")
    other = siftc.compile(models_zoo.create("mlp"), policy="sparse:0.5", example_inputs=models_zoo.example_inputs("mlp", 2))
    siftc.save(other, tmp_path / "b")
    os.replace(tmp_path / "b" / "model.safetensors", tmp_path / "a" / "model.safetensors")
    with pytest.raises(siftc.CheckpointError, match="SHA-256 differs"):
        siftc.load(tmp_path / "a")      # a's state with b's weights would load as neither
    siftc.save(other, tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "siftc.json").read_text())
    meta["graph"][1]["target"] = {"fn": "os.system"}
    meta["graph"][1]["op"] = "call_function"
    (tmp_path / "b" / "siftc.json").write_text(json.dumps(meta))
    with pytest.raises(siftc.CheckpointError, match="calls 'os.system', which is not a function under torch"):
        siftc.load(tmp_path / "b")             # os is never imported, nothing is called


class _Dropping(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 32), nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(F.dropout(torch.relu(self.fc1(x)), 0.5, self.training))


def test_train_eval_following_calls_are_saved_as_data(tmp_path):
    """Capture turns F.dropout(training=self.training) into siftc's FollowTraining module (it
    would otherwise freeze the flag); save/load keeps it, so the loaded model drops in train
    mode and not in eval mode, like the compiled one, draw for draw."""
    x = (torch.randn(4, 8),)
    gm = siftc.compile(_Dropping(), policy="sparse:0.5,head=sparse", example_inputs=x)
    assert any(type(m).__name__ == "FollowTraining" for m in gm.modules())
    siftc.save(gm, tmp_path)
    back = siftc.load(tmp_path)
    assert any(type(m).__name__ == "FollowTraining" for m in back.modules())
    assert torch.equal(_out(gm, x), _out(back, x))
    outs = []
    for model in (gm, back):
        model.train()
        torch.manual_seed(3)
        outs.append(model(*x))
    assert torch.equal(*outs) and not torch.equal(outs[0], _out(gm, x))
