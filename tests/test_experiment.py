"""`siftc experiment`: the CI smoke grid end to end (training, JSON lines, table, plots), resuming,
and spec errors. The full study specs (models_zoo/experiments/*.yaml) run outside CI."""
import json
import math
import shutil
from pathlib import Path

import pytest

import siftc.experiments.grid as ex
from siftc.cli import main

SPECS = Path(__file__).resolve().parents[1] / "models_zoo" / "experiments"


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path, monkeypatch):
    """A spec's results path is relative to the working directory: run every test from tmp_path."""
    monkeypatch.chdir(tmp_path)


def test_results_go_to_the_working_directory_not_beside_the_spec(tmp_path, capsys):
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    spec = spec_dir / "smoke.yaml"
    shutil.copy(SPECS / "smoke.yaml", spec)
    assert main(["experiment", str(spec), "--dry-run"]) == 0
    assert f"results in {tmp_path / 'smoke_results.jsonl'}" in capsys.readouterr().out
    assert ex.results_path(ex.load_spec(SPECS / "mnist.yaml")) == tmp_path / "models_zoo/results/mnist.jsonl"


def test_smoke_grid_end_to_end_and_resume(tmp_path, capsys):
    spec = tmp_path / "smoke.yaml"
    shutil.copy(SPECS / "smoke.yaml", spec)
    assert main(["experiment", str(spec), "--no-progress"]) == 0
    out = capsys.readouterr().out
    lines = [json.loads(x) for x in (tmp_path / "smoke_results.jsonl").read_text().splitlines()]
    assert [x["member"] for x in lines] == ["dense", "wide"]
    wide = lines[1]
    assert wide["policy"] == "wide:0.75,stem=sparse,dst=rigl,dT=5" and wide["dst"] == "rigl"
    assert 0.0 < wide["value"] <= 1.0 and wide["metric"] == "test_accuracy"
    # equal training FLOPs: same steps (iso-FLOP compile), the ledger within RigL's dense-gradient steps
    assert wide["steps"] == lines[0]["steps"] == 20
    assert 1.0 <= wide["train_flops"] / lines[0]["train_flops"] < 1.1
    summary = tmp_path / "smoke_results"                 # the results file's name without .jsonl
    table = (summary / "summary.md").read_text()
    assert "| mnist_mlp | wide (stem=sparse,dT=5) | 0.75 | rigl | test_accuracy |" in table and table in out
    for png in ("mnist_mlp_vs_sparsity.png", "mnist_mlp_vs_flops.png"):
        assert (summary / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # resumable: a second run trains nothing and appends nothing
    assert main(["experiment", str(spec), "--dry-run"]) == 0
    assert "0 cells to run" in capsys.readouterr().out
    assert len((tmp_path / "smoke_results.jsonl").read_text().splitlines()) == 2


def test_study_specs_expand_to_the_issue_grids():
    mnist = ex.cells(ex.load_spec(SPECS / "mnist.yaml"))
    assert len(mnist) == 2 * 3 * (1 + 4 * 3 * 3)           # 2 models x 3 seeds x (dense + 4 members x 3 s x 3 DST)
    cifar = ex.cells(ex.load_spec(SPECS / "cifar.yaml"))
    assert len(cifar) == 3 * (1 + 2 * 3 + 2)                 # shared dense runs counted once
    gpt = ex.cells(ex.load_spec(SPECS / "shakespeare.yaml"))
    assert len(gpt) == 2 * (1 + 2 * 2 + 2)                   # + wide static at .5/.75
    longer = ex.cells(ex.load_spec(SPECS / "longer_training.yaml"))
    assert {(c.recipe, c.dense_steps) for c in longer} == {("cifar_resnet18", 1000), ("cifar_resnet18", 200),
                                                          ("shakespeare_gpt", 1500), ("shakespeare_gpt", 300)}
    assert {c.schedule for c in longer} == {"cosine"}
    assert len(longer) == 2 * 3 * 3 + 2 * 2 * 3 + 2 + 3 * 5 + 2  # dense and repeated cells counted once
    updates = ex.cells(ex.load_spec(SPECS / "rigl_updates.yaml"))
    assert len(updates) == 3 * (1 + 3 * 2) + 3 * (1 + 2)
    assert {c.policy.split("dT=")[1] for c in updates if c.member == "wide"} == {"25", "20"}
    cnn_bn = ex.cells(ex.load_spec(SPECS / "mnist_cnn_bn.yaml"))
    assert len(cnn_bn) == 3 * (1 + 4 * 3 * 3)               # the CNN half of mnist.yaml ...
    assert {c.bn_recalibrate for c in cnn_bn} == {10}           # ... every cell BatchNorm-recalibrated
    assert {c.key.removesuffix("|bn_recalibrate=10") for c in cnn_bn} == {c.key for c in mnist if c.recipe == "mnist_cnn"}


def test_shards_split_the_grid_without_overlap(tmp_path, capsys):
    spec = SPECS / "mnist.yaml"
    keys = {c.key for c in ex.cells(ex.load_spec(spec))}
    empty = tmp_path / "mnist.yaml"          # same grid, empty results file: every cell is to run
    empty.write_text(spec.read_text().replace("results: models_zoo/results/mnist.jsonl", "results: none.jsonl"))
    got = []
    for i in range(3):
        assert main(["experiment", str(empty), "--dry-run", "--shard", f"{i}/3"]) == 0
        got.append([x for x in capsys.readouterr().out.splitlines() if "|" in x])
    assert sorted(sum(got, [])) == sorted(keys) and all(abs(len(g) - len(keys) / 3) < 1 for g in got)
    with pytest.raises(ex.SiftcError, match="0 <= I < N"):
        ex.parse_shard("2/2")
    with pytest.raises(ex.SiftcError, match="write I/N"):
        ex.parse_shard("half")


def test_bad_spec_names_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nrecipes:\n  - recipe: mnist_mlp\n    stepz: 10\n")
    with pytest.raises(ex.SiftcError, match="needs 'recipe' and 'steps'.*stepz"):
        ex.load_spec(bad)
    with pytest.raises(ex.SiftcError, match="not found"):
        ex.load_spec(tmp_path / "missing.yaml")


def test_summary_mean_and_std_over_seeds():
    lines = [{"recipe": "r", "member": m, "sparsity": s, "dst": d, "metric": "test_accuracy", "value": v,
              "steps": 10, "train_flops": 100} for m, s, d, v in
             [("dense", 0.0, "static", 0.5), ("dense", 0.0, "static", 0.7), ("wide", 0.75, "rigl", 0.8)]]
    rows = ex.summary_rows(lines)
    assert rows[0]["member"] == "dense" and rows[0]["mean"] == pytest.approx(0.6) and rows[0]["n"] == 2
    assert rows[0]["std"] == pytest.approx(0.1414, abs=1e-4) and rows[1]["flops_vs_dense"] == 1.0


def test_other_step_budgets_of_a_recipe_are_kept_apart(tmp_path):
    """A results file holding one recipe at two dense step budgets: two tables, two sets of plots,
    each dense row compared with its own budget's runs, nothing averaged across them."""
    lines = [{"recipe": "r", "member": m, "sparsity": s, "dst": d, "metric": "test_accuracy", "value": v,
              "steps": n, "dense_steps": n, "train_flops": 3 * n} for m, s, d, v, n in
             [("dense", 0.0, "static", 0.4, 200), ("wide", 0.75, "rigl", 0.3, 200),
              ("dense", 0.0, "static", 0.6, 1000), ("wide", 0.75, "rigl", 0.7, 1000)]]
    rows = {(r["recipe"], r["member"]): r for r in ex.summary_rows(lines)}
    assert set(rows) == {("r_200steps", "dense"), ("r_200steps", "wide"), ("r_1000steps", "dense"), ("r_1000steps", "wide")}
    assert rows[("r_1000steps", "wide")]["mean"] == 0.7 and rows[("r_1000steps", "wide")]["n"] == 1
    assert rows[("r_200steps", "dense")]["mean"] == 0.4 and rows[("r_1000steps", "wide")]["flops_vs_dense"] == 1.0
    table = ex.headline_markdown(ex.summary_rows(lines))
    assert "**r_1000steps**: test_accuracy, mean +- std (seeds), equal training FLOPs (the dense run's 1000 steps)" in table
    files = {p.name for p in ex.plot(lines, tmp_path)}
    assert files == {f"r_{n}steps_vs_{x}.png" for n in (200, 1000) for x in ("sparsity", "flops")}
    # one setting per recipe keeps the plain recipe name (the committed file layout)
    assert {r["recipe"] for r in ex.summary_rows(lines[:2])} == {"r"}


def test_each_recipe_entry_keeps_its_own_learning_rate(tmp_path):
    """Two entries of one recipe at other learning rates are other cells, each trained at its own lr."""
    spec = tmp_path / "lr.yaml"
    spec.write_text("name: lr\nrecipes:\n"
                    "  - {recipe: mnist_mlp, steps: 10, seeds: [0], lr: 0.01}\n"
                    "  - {recipe: mnist_mlp, steps: 10, seeds: [0], lr: 0.2, batch_size: 32}\n"
                    "  - {recipe: mnist_mlp, steps: 10, seeds: [0]}\n")
    got = {c.key: (c.lr, c.batch_size) for c in ex.cells(ex.load_spec(spec))}
    assert got == {"mnist_mlp|dense|seed=0|dense_steps=10|lr=0.01": (0.01, None),
                   "mnist_mlp|dense|seed=0|dense_steps=10|batch_size=32|lr=0.2": (0.2, 32),
                   "mnist_mlp|dense|seed=0|dense_steps=10": (None, None)}


def test_other_learning_rates_are_kept_apart_and_old_lines_take_the_recipe_lr():
    base = {"recipe": "mnist_mlp", "member": "dense", "sparsity": 0.0, "dst": "static", "metric": "test_accuracy",
            "steps": 10, "dense_steps": 10, "batch_size": 64, "train_flops": 1}
    lines = [{**base, "value": 0.5},                      # written before the lr was recorded: the recipe's 0.05
             {**base, "value": 0.7, "lr": 0.05}, {**base, "value": 0.2, "lr": 0.01}]
    rows = {r["recipe"]: r for r in ex.summary_rows(lines)}
    assert set(rows) == {"mnist_mlp_lr0.05", "mnist_mlp_lr0.01"}
    assert rows["mnist_mlp_lr0.05"]["n"] == 2 and rows["mnist_mlp_lr0.01"]["mean"] == 0.2


def test_a_cell_reproduces_with_siftc_train_equal_flops(tmp_path, capsys):
    """The command RESULTS.md gives for re-running a cell: `siftc train ... --equal-flops` with the
    spec's dense steps trains the same steps as the grid cell and gets the same numbers, bit for bit
    (same machine); the line records the machine its last digits depend on."""
    spec = tmp_path / "one.yaml"
    spec.write_text("name: one\nresults: one.jsonl\nrecipes:\n"
                    "  - {recipe: mnist_cnn, steps: 20, batch_size: 8, members: [parallel], sparsities: [0.6],\n"
                    "     seeds: [0],\n"
                    "     options: {parallel: iso=nominal}}\n")
    assert main(["experiment", str(spec), "--no-progress"]) == 0
    grid = [json.loads(x) for x in (tmp_path / "one.jsonl").read_text().splitlines()]
    cell = next(x for x in grid if x["member"] == "parallel")
    # equal training FLOPs: the dense steps divided by the compiled model's FLOP ratio, rounded down
    # (k = round(1/0.4) = 3 branches at the nominal density 0.4 cost 1.2x the layer)
    assert cell["iso_flop_ratio"] > 1 and cell["steps"] == math.floor(20 / cell["iso_flop_ratio"]) < 20
    capsys.readouterr()
    assert main(["train", "mnist_cnn", "--policy", "parallel:0.6,iso=nominal", "--steps", "20", "--batch-size", "8",
                 "--seed", "0",
                 "--equal-flops", "--no-progress", "--out", str(tmp_path / "again.jsonl")]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k in ("steps", "value", "train_loss", "train_flops", "cpu", "cpu_capability", "torch"):
        assert again[k] == cell[k], k
    assert again["cpu_capability"] and again["torch"].startswith("2.")


def test_cells_of_other_policies_of_one_member_are_reported_apart(tmp_path):
    """One member under two policies (the defaults, and count=all,...) is two rows of the tables and
    two lines of the plot: a mean over both would describe neither (the fidelity grid's first
    summary pooled 9 Sparse Parallel runs of three policies into 28.03% +- 12.77)."""
    base = {"recipe": "r", "metric": "test_accuracy", "steps": 10, "dense_steps": 10, "train_flops": 1}
    lines = [{**base, "member": "dense", "sparsity": 0.0, "dst": "static", "policy": "dense", "value": 0.5},
             {**base, "member": "parallel", "sparsity": 0.75, "dst": "rigl", "policy": "parallel:0.75,dst=rigl",
              "value": 0.4},
             {**base, "member": "parallel", "sparsity": 0.75, "dst": "rigl",
              "policy": "parallel:0.75,dst=rigl,parallel_form=imagenet", "value": 0.1},
             {**base, "member": "parallel", "sparsity": 0.75, "dst": "rigl",
              "policy": "parallel:0.75,dst=rigl,parallel_form=imagenet", "value": 0.2}]
    rows = {ex.member_label(r): r for r in ex.summary_rows(lines)}
    assert set(rows) == {"dense", "parallel", "parallel (parallel_form=imagenet)"}
    assert rows["parallel"]["n"] == 1 and rows["parallel (parallel_form=imagenet)"]["mean"] == pytest.approx(0.15)
    assert rows["parallel"]["flops_vs_dense"] == 1.0
    table = ex.headline_markdown(ex.summary_rows(lines))
    assert "| parallel | rigl | 40.00% +- 0.00 (1) |" in table
    assert "| parallel (parallel_form=imagenet) | rigl | 15.00% +- 7.07 (2) |" in table
    assert "| r | parallel (parallel_form=imagenet) | 0.75 | rigl |" in ex.summary_markdown(ex.summary_rows(lines))
    assert {p.name for p in ex.plot(lines, tmp_path)} == {"r_vs_sparsity.png", "r_vs_flops.png"}
