"""``preset=reference`` is the authors' Sparse-IFT to the parameter (docs/method.md, "Fidelity").

The expected numbers were counted on the authors' public code (CerebrasResearch/Sparse-IFT,
ComputerVision/CIFAR, configs/resnet18/sparseift/*.yaml) for its CIFAR-100 ResNet-18: parameters in
all, non-zero parameters (masks drawn Bernoulli at density d, so within 1%), and the widths, branch
counts and ranks each member gives every 3x3 conv. The GPT-3 Small widths are those of the published
Sparse Wide configs.
"""
import warnings

import pytest
import torch

import models_zoo
import siftc

# cell -> (parameters in all, non-zero parameters) of the authors' model
REFERENCE = {
    "wide:0.5": (22_152_430, 11_210_215), "wide:0.75": (44_755_172, 11_196_376), "wide:0.9": (111_347_550, 11_188_577),
    "parallel:0.5": (22_220_964, 11_152_364), "parallel:0.75": (44_207_268, 11_122_074),
    "parallel:0.9": (110_166_180, 11_142_012),
    "factorized:0.5": (22_232_206, 11_156_986), "factorized:0.75": (44_222_632, 11_123_260),
    "factorized:0.9": (110_190_216, 11_136_281),
    "doped:0.5": (16_698_276, 8_383_197), "doped:0.75": (19_440_804, 4_907_820), "doped:0.9": (21_087_524, 2_164_129),
    "sparse:0.5": (11_220_132, 5_642_334), "sparse:0.75": (11_220_132, 2_851_827), "sparse:0.9": (11_220_132, 1_177_312),
}
# the authors' FLOPs / dense budget for the cells that are not iso-FLOP (their counter)
UNDER_BUDGET = {"doped:0.5": 0.7459, "doped:0.75": 0.4380, "doped:0.9": 0.1937,
                "sparse:0.5": 0.5032, "sparse:0.75": 0.2547, "sparse:0.9": 0.1061}
# per 3x3 conv (f_in, f_out) = (64,64),(64,128),(128,128),(128,256),(256,256),(256,512),(512,512)
FACTORIZED_D = {0.5: [116, 210, 231, 419, 461, 838, 922], 0.75: [231, 419, 461, 838, 922, 1676, 1844],
                0.9: [577, 1048, 1153, 2095, 2305, 4190, 4609]}
CONVS = {(64, 64): "layer1.0.conv1", (64, 128): "layer2.0.conv1", (128, 128): "layer2.0.conv2",
         (128, 256): "layer3.0.conv1", (256, 256): "layer3.0.conv2", (256, 512): "layer4.0.conv1",
         (512, 512): "layer4.0.conv2"}
WIDTHS = {0.5: 90, 0.75: 128, 0.9: 202}     # base width int(64 * sqrt(round(1/(1-s))))


def _compile(cell: str):
    torch.manual_seed(0)
    model = models_zoo.create("resnet18_cifar", num_classes=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return siftc.compile(model, policy=f"{cell},preset=reference", example_inputs=(torch.randn(1, 3, 32, 32),))


@pytest.mark.parametrize("cell", list(REFERENCE))
def test_reference_cells_match_the_authors_model(cell):
    member, s = cell.split(":")
    s = float(s)
    gm = _compile(cell)
    rep = gm.siftc.report()
    total, nonzero = REFERENCE[cell]
    assert abs(rep.dense_params / total - 1) <= 0.002, (rep.dense_params, total)
    assert abs(rep.nonzero_params / nonzero - 1) <= 0.01, (rep.nonzero_params, nonzero)
    layers = {L["name"]: L for L in rep.layers}
    if member == "wide":
        w = WIDTHS[s]
        assert [gm.get_submodule(f"layer{i}.0.conv1").weight.shape[0] for i in range(1, 5)] == [w, 2 * w, 4 * w, 8 * w]
        assert rep.layers_ratio == pytest.approx(1.0, abs=0.005)     # s' solved in the authors' convention
    elif member in ("parallel", "factorized", "doped"):
        for (f_in, f_out), q in CONVS.items():
            detail = layers[q]["detail"]
            if member == "parallel":
                assert detail.startswith(f"k={round(1 / (1 - s))} branches, no ReLU per branch")
                assert "replaces the norm" in detail                  # the branch BNs replace the block's BN
            elif member == "factorized":
                assert detail.startswith(f"inner d={FACTORIZED_D[s][list(CONVS).index((f_in, f_out))]}")
            else:
                r = int(s * 9 * f_in * f_out / (9 * f_in + f_out))
                assert detail.startswith(f"rank r={r}, U and V masked")
        for q in ("layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"):
            assert layers[q]["member"] == "sparse" and "shortcut" in layers[q]["detail"]
        assert all(d == pytest.approx(1 - s, abs=1e-3) for d in gm.siftc.densities.values())   # d = 1 - s
    if cell in UNDER_BUDGET:        # stated honestly: far under the budget, as the authors' runs are
        assert rep.layers_ratio == pytest.approx(UNDER_BUDGET[cell], abs=0.01)
        assert rep.iso_flop_ratio < 0.8


def test_reference_init_and_training_schedule():
    """init=reference: member convs Kaiming fan_out; plain blocks' last BN at 0, rebuilt blocks' at 1;
    RigL every 100 steps to 75% with drop 0.3 cosine, drop count floored."""
    wide = _compile("wide:0.5")
    assert float(wide.get_submodule("layer1.0.bn2").weight.abs().sum()) == 0.0
    assert float(wide.get_submodule("layer1.0.bn1").weight.min()) == 1.0
    assert "layer1.0.bn2.weight" in wide.siftc.initialised
    fact = _compile("factorized:0.5")
    assert float(fact.get_submodule("layer1.0.bn2").weight.min()) == 1.0
    p = fact.siftc.policy
    assert (p.dst, p.dT, p.drop, p.end, p.drop_schedule, p.drop_round) == ("rigl", 100, 0.3, 0.75, "cosine", "floor")
    w = fact.get_submodule("layer4.0.conv2.U").weight
    kept = w[fact.siftc.masks()["layer4.0.conv2.U"]]
    fan_out = w.shape[0] * 9
    assert float(kept.std()) == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)


def test_preset_keys_mix_and_print():
    p = siftc.Policy.parse("parallel:0.75,preset=reference,parallel_form=imagenet,shortcut=member")
    assert (p.parallel_form, p.shortcut, p.iso, p.lowrank) == ("imagenet", "member", "nominal", "sparse")
    assert siftc.Policy.parse(str(p)) == p and p.preset == "reference"
    assert siftc.Policy.parse("wide:0.5,preset=reference,round=8").round == 8     # a key written out wins
    with pytest.raises(siftc.PolicyError, match="preset='paper'.*allowed values: none, reference"):
        siftc.Policy.parse("wide:0.5,preset=paper")


@pytest.mark.parametrize("s,d_model", [(0.5, 1092), (0.75, 1536)])
def test_gpt3_small_reference_widths_and_flop_overshoot(s, d_model):
    """The published Sparse Wide GPT-3 Small configs: d_model 768 -> 1092 / 1536, FFN 4 x d_model,
    12 heads kept (the head size grows), s on every sparse weight (no FLOP rebalancing); the report
    says what that costs (the dense, widened LM head and attention are over the budget)."""
    torch.manual_seed(0)
    model = models_zoo.create("gpt3_small", n_layer=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gm = siftc.compile(model, policy=f"wide:{s},preset=reference",
                           example_inputs=models_zoo.example_inputs("gpt3_small", 1, 64))
    assert gm.wte.weight.shape == (50257, d_model) and gm.lm_head.weight is gm.wte.weight
    assert gm.get_submodule("h.0.mlp.c_fc").weight.shape == (4 * d_model, d_model)
    assert gm.get_submodule("h.0.attn.c_attn").weight.shape == (3 * d_model, d_model)
    assert all(d == pytest.approx(1 - s, abs=1e-4) for d in gm.siftc.densities.values())
    rep = gm.siftc.report()
    assert next(g for g in rep.groups if g["width"] == 768)["unit"] == 12       # 12 heads, head size grows
    assert rep.iso_flop_ratio > 1.2 and "iso=nominal" in rep.iso_note
    assert any("GPT-3 configs" in str(w.message) for w in caught)
