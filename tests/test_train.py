"""Training recipes on the real data: accuracy well above chance, JSON lines with the ledger, torchrun."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from siftc.experiments.train import train


def test_mnist_mlp_rigl_learns_and_logs_ledger(tmp_path):
    out = tmp_path / "r.jsonl"
    # Sparse Wide + RigL end to end. stem=sparse: the 784-input MLP's widened dense
    # stem alone exceeds the dense budget (the pilot in docs/method.md; tests/test_wide.py checks the error)
    line = train("mnist_mlp", "wide:0.75,stem=sparse,dst=rigl", steps=300, out=str(out), progress=False)
    assert line["metric"] == "test_accuracy" and line["value"] > 0.7        # chance is 0.1
    saved = [json.loads(x) for x in out.read_text().splitlines()]
    assert saved == [line]
    assert line["train_flops"] > 0 and abs(line["train_flops"] / line["dense_train_flops"] - 1) < 0.05


@pytest.mark.parametrize("recipe", ["mnist_cnn", "cifar_resnet18", "shakespeare_gpt"])
def test_other_recipes_run(recipe, tmp_path):
    line = train(recipe, "parallel:0.5,dst=set,dT=5", steps=12, batch_size=8, out=str(tmp_path / "r.jsonl"),
                 progress=False)
    assert line["steps"] == 12 and line["value"] > 0
    if recipe == "shakespeare_gpt":
        assert line["metric"] == "val_perplexity" and line["value"] < 200


def test_dense_policy_trains_without_dst(tmp_path):
    line = train("mnist_mlp", "dense", steps=20, out=str(tmp_path / "r.jsonl"), progress=False)
    assert line["train_flops"] == line["dense_train_flops"]
    assert line["lr"] == 0.05                                   # the recipe's learning rate is logged
    assert train("mnist_mlp", "dense", steps=2, lr=0.01, out=None, progress=False)["lr"] == 0.01


def test_torchrun_two_processes(tmp_path):
    torchrun = shutil.which("torchrun") or None
    cmd = ([torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]) + [
        "--nproc_per_node", "2", "--master_port", "29533", "-m", "siftc.cli", "train", "mnist_mlp",
        "--policy", "parallel:0.75,dst=rigl,dT=5", "--steps", "20", "--no-progress", "--out", str(tmp_path / "r.jsonl")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(cmd, check=True, env=env, timeout=300, cwd=tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["world_size"] == 2 and lines[0]["steps"] == 20


def test_recalibrate_bn_sets_running_stats_to_the_batch_average():
    import torch
    from torch import nn

    from siftc.experiments.train import recalibrate_bn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(2, 1, 8, 8))
    model.eval()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    batches = [torch.randn(16, 1, 8, 8) * (i + 1) for i in range(3)]
    assert recalibrate_bn(model, iter(batches)) == 1
    with torch.no_grad():
        means = [model[0](b).mean(dim=(0, 2, 3)) for b in batches]
    bn = model[1]
    assert torch.allclose(bn.running_mean, torch.stack(means).mean(0), atol=1e-5)     # plain average
    assert bn.momentum == 0.1 and not model.training                                    # restored
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())       # weights untouched
    assert recalibrate_bn(nn.Linear(2, 2), iter(batches)) == 0


def test_bn_recalibrate_is_logged_and_keys_its_experiment_cells(tmp_path):
    import siftc.experiments.grid as ex
    line = train("mnist_cnn", "dense", steps=3, batch_size=8, out=None, progress=False, bn_recalibrate=2)
    assert line["bn_recalibrate"] == 2 and 0 < line["value"] <= 1
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nrecipes:\n  - recipe: mnist_cnn\n    steps: 3\n    bn_recalibrate: 4\n")
    (cell,) = ex.cells(ex.load_spec(spec))
    assert cell.bn_recalibrate == 4 and cell.key.endswith("|bn_recalibrate=4")


def test_cosine_schedule_anneals_to_zero_and_is_logged(tmp_path):
    import siftc.experiments.grid as ex
    from siftc.core.errors import SiftcError
    const = train("mnist_mlp", "dense", steps=6, batch_size=8, out=None, progress=False)
    cos = train("mnist_mlp", "dense", steps=6, batch_size=8, out=None, progress=False, schedule="cosine")
    assert "schedule" not in const and cos["schedule"] == "cosine"
    assert cos["lr"] == 0.05 and cos["lr_end"] == pytest.approx(0.0, abs=1e-12)   # base lr logged, annealed to 0
    assert cos["train_loss"] != const["train_loss"]            # the same batches at smaller steps
    with pytest.raises(SiftcError, match="schedule 'linear'"):
        train("mnist_mlp", "dense", steps=1, out=None, progress=False, schedule="linear")
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nrecipes:\n  - {recipe: mnist_mlp, steps: 3, schedule: cosine}\n")
    (cell,) = ex.cells(ex.load_spec(spec))
    assert cell.schedule == "cosine" and cell.key.endswith("|schedule=cosine")
    spec.write_text("name: s\nrecipes:\n  - {recipe: mnist_mlp, steps: 3, schedule: step}\n")
    with pytest.raises(SiftcError, match="recipes\\[0\\] schedule 'step'"):
        ex.load_spec(spec)
