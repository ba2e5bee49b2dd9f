"""Run by tests/test_accelerate.py under ``accelerate launch`` with 2 processes (not collected).

Checks data-parallel training through Accelerate in two CPU processes (gloo)
and prints one JSON line from process 0:

* ``max_weight_diff``: the multi-task net trained on 2 processes x batch 32
  against the same net trained in one process on batch 64 (weights saved by
  the parent test in ``$SKTRANSFER_REFERENCE``): one averaged gradient of two
  halves is the gradient of the whole batch, so they must agree;
* ``same_*``: every process ends with the same weights;
* ``refused``: the error of a weighting that cannot run data parallel.
"""

import json
import os

import numpy as np
import torch
from accelerate import Accelerator
from sklearn.datasets import load_digits

from sktransfer import ContinualClassifier, MultiTaskClassifier

torch.set_num_threads(1)
accelerator = Accelerator(cpu=True)
X, y = load_digits(return_X_y=True)
X = (X / 16).astype(np.float32)[:256]
Y = np.stack([y % 2, (y > 4).astype(int)], axis=1)[:256]
NO_SHUFFLE = {"iterator_train__shuffle": False}


def checksum(est):
    value = torch.stack([p.detach().double().sum() for p in est.net_.module_.parameters()])
    gathered = accelerator.gather(value.sum().reshape(1))
    return bool(torch.allclose(gathered, gathered[0].expand_as(gathered)))


out = {"processes": accelerator.num_processes}
clf = MultiTaskClassifier(weighting="uncertainty", hidden_layer_sizes=(16,), batch_size=32,
                          max_epochs=3, lr=1e-2, random_state=0, net_params=NO_SHUFFLE,
                          accelerator=accelerator).fit(X, Y)
reference = torch.load(os.environ["SKTRANSFER_REFERENCE"], weights_only=True)
state = clf.net_.module_.state_dict()
out["max_weight_diff"] = max(float((state[k].double() - v.double()).abs().max())
                             for k, v in reference.items())
out["same_multitask"] = checksum(clf)
out["predictions"] = int(clf.predict(X).shape[0])

tasks = (y[:256] >= 5).astype(int)
for strategy in ("ewc", "si", "lwf", "replay", "agem"):
    cl = ContinualClassifier(strategy=strategy, scenario="task", hidden_layer_sizes=(16,),
                             lr=1e-2, max_epochs=5, random_state=0, accelerator=accelerator)
    cl.fit(X, y[:256], task_ids=tasks)
    out[f"same_{strategy}"] = checksum(cl)
    out[f"score_{strategy}"] = float(cl.score(X, y[:256], task_ids=tasks))

try:
    MultiTaskClassifier(weighting="mgda", max_epochs=1, accelerator=accelerator).fit(X, Y)
    out["refused"] = ""
except ValueError as exc:
    out["refused"] = str(exc)
if accelerator.is_main_process:
    print(json.dumps(out), flush=True)
