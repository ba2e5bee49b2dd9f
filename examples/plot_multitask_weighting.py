"""
==================================================
Multi-task learning with missing labels: weighting
==================================================

One network learns three questions about each handwritten digit of
scikit-learn's :func:`~sklearn.datasets.load_digits`:

* task ``digit``: which digit it is (10 classes);
* task ``even``: whether the digit is even (2 classes);
* task ``large``: whether the digit is 5 or more (2 classes).

The targets form a 2-D ``Y`` with one column per task, and about 30% of the
labels of each task are missing (``NaN``): a row can teach the network one
task while its label for another task is unknown. The loss of each task is
computed on its labelled entries only.

:class:`~sktransfer.multitask.MultiTaskClassifier` combines the per-task
losses with a *weighting* strategy. We let
:class:`~sklearn.model_selection.GridSearchCV` choose between equal weights,
fixed weights (:class:`~sktransfer.multitask.StaticWeighting`), loss-based
schemes (homoscedastic uncertainty, dynamic weight averaging, GradNorm) and
gradient-based ones (MGDA-UB, PCGrad), compare them on a held-out split task
by task, and look at how the task weights evolve during training.
"""

# %%
# The data: three tasks, 30% of the labels missing
# ------------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sktransfer.multitask import MultiTaskClassifier, StaticWeighting

torch.set_num_threads(1)  # small networks train fastest on one thread

X, digit = load_digits(return_X_y=True)
tasks = ["digit", "even", "large"]
Y = np.column_stack([digit, digit % 2 == 0, digit >= 5]).astype(float)

rng = np.random.RandomState(0)
Y[rng.rand(*Y.shape) < 0.3] = np.nan  # hide 30% of the labels of every task

X_train, X_test, Y_train, Y_test = train_test_split(X, Y, test_size=0.3, random_state=0)
print(f"{X_train.shape[0]} training rows, {X_test.shape[0]} test rows")
print("labelled fraction per task:", np.round((~np.isnan(Y_train)).mean(axis=0), 2))

# %%
# Grid search over the weighting strategy
# ---------------------------------------
# ``weighting`` takes a name or a strategy object, so the grid can mix both.
# The static weights put less weight on the two easy binary tasks.
#
# With ``cv=3`` scikit-learn would pick a stratified splitter for a
# classifier, which needs a target without missing values; with ``NaN`` in
# ``Y`` we pass a plain :class:`~sklearn.model_selection.KFold`.
# The search's score is the estimator's ``score``: the mean over tasks of the
# accuracy on each task's labelled entries.

# Batches of 128 rows at a learning rate of 2e-3 train this small network in
# 20 epochs; the search fits 7 x 3 of them, so each must be quick.
model = make_pipeline(
    StandardScaler(),
    MultiTaskClassifier(hidden_layer_sizes=(64,), max_epochs=20, batch_size=128, lr=2e-3,
                        random_state=0),
)
grid = {
    "multitaskclassifier__weighting": [
        "equal",
        StaticWeighting([1.0, 0.5, 0.5]),
        "uncertainty",
        "dwa",
        "gradnorm",
        "mgda_ub",
        "pcgrad",
    ]
}
search = GridSearchCV(model, grid, cv=KFold(3, shuffle=True, random_state=0))
n_candidates = len(grid["multitaskclassifier__weighting"])
print(f"grid search: {n_candidates} weightings x 3 folds, 20 epochs each...", flush=True)
search.fit(X_train, Y_train)


def label(weighting):
    return weighting if isinstance(weighting, str) else repr(weighting)


results = pd.DataFrame(
    {
        "weighting": [label(w) for w in search.cv_results_["param_multitaskclassifier__weighting"]],
        "mean CV score": search.cv_results_["mean_test_score"],
        "std": search.cv_results_["std_test_score"],
    }
)
print(results.round(4).to_string(index=False))
print("best:", label(search.best_params_["multitaskclassifier__weighting"]))

# %%
# Per-task accuracy on the held-out split
# ---------------------------------------
# ``predict`` returns one column per task. Each task is scored on the test
# rows where its label is known. The best model of the search was refitted
# on the whole training split; the other candidates are refitted the same
# way for comparison.


def per_task_accuracy(estimator):
    pred = estimator.predict(X_test)
    accs = {}
    for k, task in enumerate(tasks):
        known = ~np.isnan(Y_test[:, k])
        accs[task] = accuracy_score(Y_test[known, k], pred[known, k])
    return accs


best = search.best_params_["multitaskclassifier__weighting"]
print(f"refitting the other {n_candidates - 1} weightings on the training split...", flush=True)
table, fitted = {}, {}
for weighting in grid["multitaskclassifier__weighting"]:
    if label(weighting) == label(best):
        est = search.best_estimator_
    else:
        est = clone(search.best_estimator_)
        est.set_params(multitaskclassifier__weighting=weighting).fit(X_train, Y_train)
    fitted[label(weighting)] = est
    table[label(weighting)] = per_task_accuracy(est)

accuracy = pd.DataFrame(table).T
accuracy["mean"] = accuracy.mean(axis=1)
accuracy.index.name = "weighting"
print(accuracy.round(3).to_string())

# %%
# Task losses and weights of the uncertainty model
# ------------------------------------------------
# The skorch net behind the estimator records, for every epoch, the mean
# training loss of each task (``train_task_losses``) and the weight each
# task's loss received (``train_task_weights``). Uncertainty weighting learns
# one log-variance :math:`s_t` per task and weights a classification loss by
# :math:`\exp(-s_t)`, adding :math:`s_t / 2` to the loss. For a fixed task
# loss :math:`L_t` the best :math:`s_t` gives the weight
# :math:`\exp(-s_t) = 1 / (2 L_t)`, so the learned weights drift toward the
# inverse of the task losses: as training drives all losses down every weight
# grows, and the task whose loss stays highest (the 10-class ``digit`` task)
# ends up with the smallest weight.

net = fitted["uncertainty"][-1].net_
losses = np.array(net.history[:, "train_task_losses"])
weights = np.array(net.history[:, "train_task_weights"])
epochs = np.arange(1, len(losses) + 1)

fig, (ax_loss, ax_weight) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
for k, task in enumerate(tasks):
    ax_loss.plot(epochs, losses[:, k], label=task)
    ax_weight.plot(epochs, weights[:, k], label=task)
ax_loss.set_yscale("log")
ax_loss.set_xlabel("epoch")
ax_loss.set_ylabel("training loss (cross-entropy)")
ax_loss.set_title("Per-task training loss")
ax_weight.set_xlabel("epoch")
ax_weight.set_ylabel(r"weight $\exp(-s_t)$")
ax_weight.set_title("Per-task weight (uncertainty weighting)")
for ax in (ax_loss, ax_weight):
    ax.legend()
    ax.grid(alpha=0.3)
plt.show()

# %%
# Task weights of the other adaptive schemes
# ------------------------------------------
# DWA weights each task by how slowly its loss fell over the last two epochs;
# GradNorm learns weights that balance the tasks' gradient norms at the last
# shared layer; MGDA-UB finds, at every step, the convex combination of the
# task gradients (with respect to the shared representation) of smallest
# norm. The recorded weight is the mean over the epoch's batches.

fig, axes = plt.subplots(1, 3, figsize=(12, 3.5), layout="constrained", sharex=True)
for ax, name in zip(axes, ["dwa", "gradnorm", "mgda_ub"]):
    history = fitted[name][-1].net_.history
    w = np.array(history[:, "train_task_weights"])
    for k, task in enumerate(tasks):
        ax.plot(np.arange(1, len(w) + 1), w[:, k], label=task)
    ax.set_title(name)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("task weight")
axes[0].legend()
plt.show()
