"""``SiftcDSTCallback``: run ``siftc.DST`` inside a Hugging Face ``transformers.Trainer``.

    model = MyLM(siftc.compile(net, policy="wide:0.75,dst=rigl", example_inputs=(ids,)))
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[SiftcDSTCallback()])
    trainer.train()                                  # or trainer.train(resume_from_checkpoint=...)

What the callback does, at the Trainer's events:
- ``on_train_begin``: finds the compiled GraphModule inside the Trainer's model and makes its
  ``siftc.DST`` with the Trainer's optimizer, ``max_steps`` as the total optimizer steps and
  ``gradient_accumulation_steps`` as ``accum`` (DST counts optimizer steps, not micro-batches).
  When the Trainer resumes (its ``global_step`` > 0), the DST state saved with that checkpoint is
  loaded; a checkpoint without one is an error, never a silent restart of the mask schedule.
- ``on_optimizer_step`` (after ``optimizer.step()``, before the gradients are zeroed): ``dst.step()``.
- ``on_save``: ``siftc_dst.pt`` (``dst.state_dict()``, loadable with ``weights_only=True``) into
  the checkpoint folder the Trainer just wrote.
- ``on_log``: adds ``siftc_mask_updates`` and ``siftc_train_flops_ratio`` (the DST training-FLOP
  ledger against the dense original) to the logged values.

The Trainer saves a model that is not a ``PreTrainedModel`` as a plain state_dict with
safetensors, which refuses tied weights: untie them (or save another way) for such models.
"""
from __future__ import annotations

import os

import torch
from transformers import TrainerCallback

from siftc.core.errors import SiftcError
from siftc.handle import handle_of
from siftc.runtime.dst import DST

STATE_FILE = "siftc_dst.pt"


def compiled_module(model):
    """The siftc-compiled GraphModule inside ``model`` (itself, or one submodule)."""
    found = [m for m in model.modules() if handle_of(m) is not None]
    if len(found) != 1:
        raise SiftcError(f"SiftcDSTCallback: the Trainer's model holds {len(found)} siftc-compiled modules; "
                         f"it needs exactly one (the GraphModule siftc.compile returned)")
    return found[0]


class SiftcDSTCallback(TrainerCallback):
    """Dynamic sparse training (siftc.DST) driven by the Trainer's own loop; ``dst_kwargs`` go to
    ``siftc.DST`` (method, dT, drop, end, ...; the compiled policy's by default)."""

    def __init__(self, **dst_kwargs):
        self.dst_kwargs = dst_kwargs
        self.dst = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if model is None or optimizer is None:
            raise SiftcError("SiftcDSTCallback: the Trainer passed no model or optimizer to on_train_begin")
        gm = compiled_module(model)
        if self.dst is not None:
            self.dst.close()
        accum = max(1, int(args.gradient_accumulation_steps))
        world = max(1, int(getattr(args, "world_size", 1)))
        self.dst = DST(gm, optimizer, total_steps=int(state.max_steps), accum=accum,
                       samples_per_step=int(args.per_device_train_batch_size) * accum * world, **self.dst_kwargs)
        if state.global_step > 0:
            path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}", STATE_FILE)
            if not os.path.isfile(path):
                raise SiftcError(f"SiftcDSTCallback: the Trainer resumes at step {state.global_step} but {path} is "
                                 f"missing: the checkpoint was not written with this callback, and restarting the "
                                 f"mask schedule would silently change the run")
            self.dst.load_state_dict(torch.load(path, weights_only=True))

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.dst.step()

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if self.dst is not None and args.should_save and os.path.isdir(folder):
            torch.save(self.dst.state_dict(), os.path.join(folder, STATE_FILE))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.dst is None or logs is None:
            return
        extra = {"siftc_mask_updates": self.dst.updates, "siftc_train_flops_ratio": round(self.dst.flops()["ratio"], 6)}
        logs.update(extra)
        if state.log_history:
            state.log_history[-1].update(extra)

    def on_train_end(self, args, state, control, **kwargs):
        if self.dst is not None:
            self.dst.close()
