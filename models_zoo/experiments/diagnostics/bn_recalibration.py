"""Is a BatchNorm model's low test accuracy a statistics artefact? Trains one cell exactly as
``siftc experiment`` does, evaluates it as trained, then again after re-estimating every BatchNorm's
statistics on 40 x 256 training images (cumulative average, no weight change). Reproduces the
BatchNorm rows of models_zoo/results/diagnostics.jsonl:

    SIFTC_DATA=../shared/data OMP_NUM_THREADS=1 python models_zoo/experiments/diagnostics/bn_recalibration.py doped:0.5 0
    ... bn_recalibration.py parallel:0.75 0 cifar_resnet18 200
"""
import json
import os
import sys

import torch

import siftc.experiments.train as T
from models_zoo import recipes

DATA = os.environ.get("SIFTC_DATA", "../shared/data")
policy, seed = sys.argv[1], int(sys.argv[2])
recipe_name = sys.argv[3] if len(sys.argv) > 3 else "mnist_cnn"
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 300
as_trained = T.evaluate


def evaluate(recipe, model, test, **kw):
    a = as_trained(recipe, model, test, **kw)
    train_x, _ = recipes.get(recipe_name).load(DATA)[0]
    g = torch.Generator().manual_seed(123)
    T.recalibrate_bn(model, (train_x[torch.randint(0, train_x.shape[0], (256,), generator=g)] for _ in range(40)))
    b = as_trained(recipe, model, test, **kw)
    print(json.dumps({"recipe": recipe_name, "policy": policy, "seed": seed, "as_trained": a["value"], "bn_recalibrated": b["value"]}))
    return a


T.evaluate = evaluate
T.train(recipe_name, policy, steps, data_dir=DATA, seed=seed, out=None, progress=False, equal_flops=True)
