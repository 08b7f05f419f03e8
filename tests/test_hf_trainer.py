"""SiftcDSTCallback: siftc.DST inside a Hugging Face Trainer, on a tiny GPT-2 and Tiny Shakespeare
(../shared/data), with gradient accumulation, checkpointing and resuming."""
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import models_zoo                                     # noqa: E402
import siftc                                          # noqa: E402
from models_zoo.data import data_dir                  # noqa: E402
from siftc.integrations.hf_trainer import STATE_FILE, SiftcDSTCallback    # noqa: E402

SEQ = 32


class _Chars(torch.utils.data.Dataset):
    def __init__(self, n=64):
        text = (data_dir() / "text" / "tinyshakespeare_input.txt").read_text()[:20000]
        ids = torch.tensor([min(ord(c), 255) for c in text])
        self.items = [ids[i * SEQ:(i + 1) * SEQ] for i in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return {"input_ids": self.items[i], "labels": self.items[i]}


class _LM(nn.Module):
    """What a user writes around a compiled LM for the Trainer: inputs by keyword, a loss out."""

    def __init__(self, gm):
        super().__init__()
        self.gm = gm

    def forward(self, input_ids, labels=None):
        logits = self.gm(input_ids)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))
        return {"loss": loss, "logits": logits}


def _model(extra: str = ""):
    torch.manual_seed(0)
    net = models_zoo.create("gpt2_tiny")
    net.lm_head.weight = nn.Parameter(net.lm_head.weight.detach().clone())   # untied (see the module docs)
    gm = siftc.compile(net, policy=f"wide:0.75,dst=rigl,dT=2{extra}",
                       example_inputs=(torch.zeros(2, SEQ, dtype=torch.long),))
    return _LM(gm)


def _args(out, steps):
    return transformers.TrainingArguments(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=4, gradient_accumulation_steps=2,
        learning_rate=1e-3, save_steps=3, logging_steps=1, report_to=[], use_cpu=True, seed=0,
        dataloader_num_workers=0, disable_tqdm=True, save_only_model=False)


def _masked_nonzeros(gm):
    return sum(int(torch.count_nonzero(gm.get_submodule(q).weight[~m])) for q, m in gm.siftc.masks().items())


def test_trainer_runs_dst_checkpoints_it_and_resumes(tmp_path):
    model = _model()
    cb = SiftcDSTCallback()
    trainer = transformers.Trainer(model=model, args=_args(tmp_path / "run", 8), train_dataset=_Chars(),
                                   callbacks=[cb])
    trainer.train()
    dst = cb.dst
    assert dst.step_count == 8 and dst.accum == 2 and dst.updates == 2       # updates at t = 2, 4 (< 0.75 * 8)
    assert _masked_nonzeros(model.gm) == 0
    logged = [h for h in trainer.state.log_history if "siftc_mask_updates" in h]
    assert logged and logged[-1]["siftc_mask_updates"] == 2 and 0 < logged[-1]["siftc_train_flops_ratio"] < 1.5
    ckpt = tmp_path / "run" / "checkpoint-3"
    saved = torch.load(ckpt / STATE_FILE, weights_only=True)
    assert saved["step_count"] == 3 and saved["updates"] == 1

    # resume from step 3 in a fresh model: the DST state comes back with the Trainer's checkpoint
    model2 = _model()
    cb2 = SiftcDSTCallback()
    trainer2 = transformers.Trainer(model=model2, args=_args(tmp_path / "run", 8), train_dataset=_Chars(),
                                    callbacks=[cb2])
    trainer2.train(resume_from_checkpoint=str(ckpt))
    assert cb2.dst.step_count == 8 and cb2.dst.updates == 2
    assert _masked_nonzeros(model2.gm) == 0
    m1, m2 = model.gm.siftc.masks(), model2.gm.siftc.masks()
    same = sum(torch.equal(m1[q], m2[q]) for q in m1)
    assert same == len(m1), f"{len(m1) - same} masks differ after resuming"


def test_resuming_a_checkpoint_without_dst_state_is_refused(tmp_path):
    model = _model()
    trainer = transformers.Trainer(model=model, args=_args(tmp_path / "run", 3), train_dataset=_Chars(),
                                   callbacks=[SiftcDSTCallback()])
    trainer.train()
    os.remove(tmp_path / "run" / "checkpoint-3" / STATE_FILE)
    args = _args(tmp_path / "run", 6)
    trainer2 = transformers.Trainer(model=_model(), args=args, train_dataset=_Chars(), callbacks=[SiftcDSTCallback()])
    with pytest.raises(siftc.SiftcError, match="siftc_dst.pt is missing"):
        trainer2.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-3"))


def test_trainer_with_kernels_swaps_them_in_at_the_end_fraction(tmp_path):
    """dst=rigl with kernels=csr under the Trainer: masks move at t = 2, 4; at t = 6 (0.75 x 8)
    DST swaps the masked linears for sparse kernels under the Trainer's (accelerate-wrapped)
    optimizer, and the last steps train through them: the run ends with the masks of the
    kernels=dense run and, to rounding, its weights."""
    from siftc.core.train_kernels import SparseTrainLinear
    runs = {}
    for extra in ("", ",kernels=csr"):
        model = _model(extra)
        cb = SiftcDSTCallback()
        transformers.Trainer(model=model, args=_args(tmp_path / f"run{extra}", 8), train_dataset=_Chars(),
                             callbacks=[cb]).train()
        runs[extra] = (model, cb.dst)
    (dense, d1), (csr, d2) = runs[""], runs[",kernels=csr"]
    assert d1.updates == d2.updates == 2
    swapped = [q for q, m in csr.gm.named_modules() if isinstance(m, SparseTrainLinear)]
    assert swapped and set(swapped) <= set(dense.gm.siftc.masks())
    for q in swapped:
        a, b = dense.gm.get_submodule(q), csr.gm.get_submodule(q)
        assert torch.equal(a.weight_mask, b.weight_mask)
        assert torch.allclose(a.weight, b.weight, atol=1e-4), q
