"""The command line: flops and compile (with dumps)."""
import json

import pytest

from siftc.cli import main


def test_cli_flops(capsys):
    assert main(["flops", "mlp"]) == 0
    out = capsys.readouterr().out
    assert "TOTAL" in out and "linear" in out and "params: 269,322" in out


def test_cli_compile_with_dumps(tmp_path, capsys):
    assert main(["compile", "mlp", "--policy", "parallel:0.75", "--dump-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "iso-FLOP ratio" in out and "net.3 | parallel" in out
    assert (tmp_path / "pipeline.txt").read_text().startswith("capture,shape-prop")
    assert main(["compile", "mlp", "--policy", "doped:0.5", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert abs(d["iso_flop_ratio"] - 1) < 0.005


def test_cli_bad_policy_is_one_line_error(capsys):
    assert main(["compile", "mlp", "--policy", "parallel:1.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("siftc: error:") and "0 <= sparsity < 1" in err and "Traceback" not in err


def test_cli_compile_exports_onnx_and_checks_it(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    assert main(["compile", "mnist_cnn", "--policy", "wide:0.9", "--onnx", str(path)]) == 0
    out = capsys.readouterr().out
    assert path.exists() and "onnxruntime vs PyTorch" in out and "2 sparse initializers of 2 masked weights" in out


def test_cli_onnx_check_max_gb_skips_and_says_so(tmp_path, capsys):
    path = tmp_path / "m.onnx"
    assert main(["compile", "mlp", "--policy", "parallel:0.9", "--onnx", str(path), "--onnx-check-max-gb", "1e-6"]) == 0
    out = capsys.readouterr().out
    assert path.exists() and "onnxruntime check skipped" in out and "over max_gb=1e-06" in out and ": ok" not in out
    assert main(["compile", "mlp", "--policy", "dense", "--onnx", str(tmp_path / "n.onnx"), "--onnx-check-max-gb", "0"]) == 2
    assert "--onnx-check-max-gb must be a positive" in capsys.readouterr().err
    assert not (tmp_path / "n.onnx").exists()


def test_cli_bench_onnx_prints_ratio(capsys):
    assert main(["bench", "onnx", "--models", "mlp", "--policy", "parallel:0.9,stem=sparse"]) == 0
    out = capsys.readouterr().out
    assert "sparse/dense" in out and out.strip().splitlines()[-1].startswith("mlp")


def test_cli_html_from_compile_and_from_dumps(tmp_path, capsys):
    page = tmp_path / "mlp.html"
    assert main(["compile", "mlp", "--policy", "parallel:0.75", "--dump-dir", str(tmp_path / "d"),
                 "--html", str(page)]) == 0
    assert "HTML viewer written to" in capsys.readouterr().out
    again = tmp_path / "again.html"
    assert main(["html", str(tmp_path / "d"), "-o", str(again)]) == 0
    for text in (page.read_text(), again.read_text()):
        assert text.startswith("<!DOCTYPE html>") and 'id="pass-6"' in text and "substitute" in text
    assert main(["html", str(tmp_path / "nothing"), "-o", str(again)]) == 1      # a one-line error
    assert "not found" in capsys.readouterr().err


def test_an_experiment_command_without_the_extra_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    import sys
    from siftc.cli import main
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nrecipes: []\n")
    monkeypatch.setitem(sys.modules, "yaml", None)        # as if pyyaml were not installed
    assert main(["experiment", str(spec), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "needs yaml" in err and "pip install 'siftc[experiments]'" in err


def test_cli_compile_saves_the_model(tmp_path, capsys):
    import siftc
    assert main(["compile", "mlp", "--policy", "sparse:0.9", "--save", str(tmp_path / "ckpt")]) == 0
    assert "compiled model saved to" in capsys.readouterr().out
    gm = siftc.load(tmp_path / "ckpt")
    assert str(gm.siftc.policy).startswith("sparse:0.9") and gm.siftc.masks()


def test_cli_compile_writes_a_hugging_face_checkpoint(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "hf"
    assert main(["compile", "models_zoo.conformance:hf_llama", "--input-shape", "2,16", "--input-dtype", "int64",
                 "--policy", "wide:0.75", "--save-pretrained", str(out)]) == 0
    assert "Hugging Face checkpoint written to" in capsys.readouterr().out
    hf = transformers.LlamaForCausalLM.from_pretrained(out)
    assert (hf.config.hidden_size, hf.config.intermediate_size) == (128, 256)


def test_cli_bench_compile_prints_the_ratio_and_the_time_by_pass(capsys):
    assert main(["bench", "compile", "--models", "mlp", "--policy", "parallel:0.75", "--repeat", "1",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("mlp "))
    assert "parallel:0.75" in row and ("ok" in row or "MISSED" in row)
    by_pass = out.split("first compile by pass (s):")[1]
    for name in ("capture=", "substitute=", "masks=", "verify=", "other="):
        assert name in by_pass


def test_cli_bench_train_convs_times_each_masked_conv_against_sparseprop(capsys):
    """``siftc bench train --convs``: each masked conv of the ResNet, dense against sparseprop's
    sparse convolution, with the sparse output checked against the dense one (last column)."""
    from siftc.core.train_kernels import sparseprop_available
    if not sparseprop_available():
        pytest.skip("sparseprop is not installed")
    assert main(["bench", "train", "--model", "resnet18_cifar", "--width", "4", "--batch", "8", "--steps", "1",
                 "--threads", "1", "--convs"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("layer1.", "layer2.", "layer3.",
                                                                                   "layer4."))]
    assert len(rows) == 19                  # every masked conv of resnet18_cifar (the stem stays dense)
    assert all(float(r[-1]) < 1e-4 for r in rows)      # sparseprop computes the same convolution
    assert "all masked convs: dense" in out
