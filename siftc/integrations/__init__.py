"""Integrations of siftc with training frameworks (optional dependencies, imported on use).

- ``siftc.integrations.hf_trainer.SiftcDSTCallback``: dynamic sparse training inside a Hugging
  Face ``transformers.Trainer``.
"""
