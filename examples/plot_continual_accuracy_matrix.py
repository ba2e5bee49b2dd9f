"""
=====================================================
Continual learning: the accuracy matrix of three ways
=====================================================

A network learns tasks one after another and is evaluated, after each task,
on the test sets of every task: ``R[i, j]`` is the accuracy on task ``j``
after learning task ``i``. Its lower triangle shows what is remembered, the
diagonal what was just learned.

We compare three continual learners from :mod:`sktransfer.continual` on
MNIST digits (the 10,000-digit test set of :func:`~sktransfer.datasets.load_mnist`):

* **naive** fine-tuning, which simply keeps training on each new task;
* **EWC** (elastic weight consolidation), which penalises changes of the
  weights that the Fisher information marks as important for old tasks;
* **replay** of a small reservoir memory of old samples.

Two task sequences show where each method helps:

1. *permuted MNIST, domain-incremental*: every task shuffles the pixels with
   its own permutation; the digits (labels) stay the same.
2. *split MNIST, class-incremental*: each task brings two new digits and the
   model must tell all the digits seen so far apart, with no task id.
"""

# %%
# Permuted MNIST
# --------------
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sktransfer.continual import EWC, ContinualClassifier, Replay
from sktransfer.datasets import load_mnist, make_permuted_tasks, make_split_tasks
from sktransfer.metrics import average_accuracy, backward_transfer, forgetting
from sktransfer.plotting import plot_accuracy_matrix

mnist = load_mnist("test", flatten=True)
X, y = mnist.data, mnist.target
rng = np.random.RandomState(0)
order = rng.permutation(len(y))
train, test = order[:300], order[8000:9000]

n_tasks = 4
X_train, y_train, t_train = make_permuted_tasks(X[train], y[train], n_tasks=n_tasks,
                                                random_state=0)
X_test, y_test, t_test = make_permuted_tasks(X[test], y[test], n_tasks=n_tasks,
                                             random_state=0)
eval_tasks = [(X_test[t_test == k], y_test[t_test == k]) for k in range(n_tasks)]

strategies = {
    "naive": "naive",
    "EWC": EWC(ewc_lambda=100.0),
    "replay": Replay(memory_size=200),
}
params = dict(hidden_layer_sizes=(128,), max_epochs=20, batch_size=32, random_state=0)


def run(scenario, X, y, t, eval_tasks):
    """Fit every strategy, return the accuracy matrices and a table of metrics."""
    matrices, rows = {}, []
    for name, strategy in strategies.items():
        clf = ContinualClassifier(strategy=strategy, scenario=scenario, **params)
        R = clf.fit(X, y, task_ids=t, eval_tasks=eval_tasks).accuracy_matrix_
        matrices[name] = R
        rows.append({"method": name, "ACC": average_accuracy(R),
                     "BWT": backward_transfer(R), "forgetting": forgetting(R)})
    return matrices, pd.DataFrame(rows).set_index("method").round(3)


matrices, table = run("domain", X_train, y_train, t_train, eval_tasks)
print(table)

fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
for ax, (name, R) in zip(axes, matrices.items()):
    plot_accuracy_matrix(R, ax=ax, title=f"{name} (ACC {average_accuracy(R):.2f})")
fig.suptitle("Permuted MNIST, domain-incremental")
fig.tight_layout()

# %%
# Naive fine-tuning loses accuracy on the first tasks as it learns new
# permutations (the lower-left corner fades). EWC and replay (of only 200
# remembered samples) both keep more of it: their backward transfer is closer
# to zero and their final average accuracy higher.
#
# Split MNIST, class-incremental
# ------------------------------
# Five tasks of two digits; after each task the single head must choose among
# all the digits seen so far. Regularisers such as EWC cannot help here: the
# old digits are never seen again, so nothing trains the network to keep
# preferring them over the new ones. Replay can.
pairs = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
train = order[:2000]
X_train, y_train, t_train = make_split_tasks(X[train], y[train], classes=pairs)
X_test, y_test, t_test = make_split_tasks(X[test], y[test], classes=pairs)
eval_tasks = [(X_test[t_test == k], y_test[t_test == k]) for k in range(5)]
params["max_epochs"] = 5

matrices, table = run("class", X_train, y_train, t_train, eval_tasks)
print(table)

fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
for ax, (name, R) in zip(axes, matrices.items()):
    plot_accuracy_matrix(R, ax=ax, title=f"{name} (ACC {average_accuracy(R):.2f})",
                         task_names=["0/1", "2/3", "4/5", "6/7", "8/9"])
fig.suptitle("Split MNIST, class-incremental")
fig.tight_layout()
plt.show()

# %%
# In the class-incremental scenario naive fine-tuning and EWC answer only the
# last two digits (an average accuracy near 1/5, as published), while replay
# keeps most of the old digits. See the user guide for the other methods (SI,
# LwF, A-GEM, progressive networks) and the benchmark numbers.
