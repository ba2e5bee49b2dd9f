"""
Data-parallel training with Accelerate
======================================

A :class:`~sktransfer.MultiTaskClassifier` and an
:class:`~sktransfer.EWCContinualClassifier` trained through Hugging Face
Accelerate. The same script runs

* in one process: ``python examples/accelerate_data_parallel.py``;
* data parallel on several GPUs:
  ``accelerate launch --multi_gpu --num_processes 2 examples/accelerate_data_parallel.py``;
* data parallel on several CPU processes (gloo):
  ``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2
  examples/accelerate_data_parallel.py`` (or ``torchrun --standalone
  --nproc_per_node 2`` with ``ACCELERATE_USE_CPU=1``).

On two CPU processes it printed ``multitask_accuracy=0.932
continual_accuracy=0.854 same_weights_on_every_process=True`` (one process:
0.947 and 0.877; each process takes half as many steps per epoch).

Each process trains on its shard of every epoch's batches and the gradients
are averaged across processes, so every process ends with the same weights
(the script checks it) and predicts the whole test set. Mixed precision
comes from the launcher (``accelerate launch --mixed_precision bf16``) or
from ``Accelerator(mixed_precision="bf16")``.

This example is not run when the documentation is built: it needs a
launcher to show data parallelism.
"""

# %%
import numpy as np
import torch
from accelerate import Accelerator
from sklearn.datasets import load_digits

from sktransfer import EWCContinualClassifier, MultiTaskClassifier

accelerator = Accelerator()
X, y = load_digits(return_X_y=True)
X = (X / 16).astype(np.float32)
train, test = slice(0, 1400), slice(1400, None)

# %%
# Multi-task: parity and "greater than 4" of every digit, two tasks.
Y = np.stack([y % 2, (y > 4).astype(int)], axis=1)
clf = MultiTaskClassifier(weighting="uncertainty", hidden_layer_sizes=(64,), max_epochs=20,
                          lr=3e-3, random_state=0, accelerator=accelerator)
clf.fit(X[train], Y[train])
multitask_acc = clf.score(X[test], Y[test])

# %%
# Continual: digits 0-4, then digits 5-9, one head per task, with EWC.
tasks = (y >= 5).astype(int)
ewc = EWCContinualClassifier(scenario="task", hidden_layer_sizes=(64,), max_epochs=10, lr=3e-3,
                             random_state=0, accelerator=accelerator)
ewc.fit(X[train], y[train], task_ids=tasks[train])
continual_acc = ewc.score(X[test], y[test], task_ids=tasks[test])


# %%
# The processes must hold the same weights after data-parallel training.
def weights_checksum(estimator):
    return torch.stack([p.detach().double().sum() for p in
                        estimator.net_.module_.parameters()]).sum().reshape(1)


same = all(
    bool(torch.allclose(g, g[0].expand_as(g)))
    for g in (accelerator.gather(weights_checksum(e).to(accelerator.device))
              for e in (clf, ewc)))
accelerator.print(f"processes={accelerator.num_processes} "
                  f"multitask_accuracy={multitask_acc:.3f} "
                  f"continual_accuracy={continual_acc:.3f} "
                  f"same_weights_on_every_process={same}")
