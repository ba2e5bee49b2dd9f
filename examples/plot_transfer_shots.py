"""
=====================================================
Fine-tuning strategies against examples per class
=====================================================

A small convolutional network is pretrained on four Omniglot alphabets
(the *source*). The *target* task is to recognise the characters of a fifth
alphabet, Greek, that the network never saw, from only ``k`` labelled
drawings per character.

We compare, for ``k`` = 1, 2, 5 and 10:

* training the same network **from scratch** on the target data;
* the **linear probe**: the frozen network as a feature extractor
  (:class:`~sktransfer.transfer.PretrainedFeatures`) followed by a
  logistic regression;
* :class:`~sktransfer.transfer.FineTuner` with each ``strategy``: ``"last"``
  (only the new head trains), ``"top"`` (the head and the top layer group),
  ``"full"`` (everything, the backbone at a 10x lower learning rate),
  ``"gradual"`` (ULMFiT's gradual unfreezing) and ``"lp_ft"`` (linear probe,
  then fine-tune everything).
"""

# %%
# Source and target
# -----------------
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from torch import nn

from sktransfer.datasets import load_omniglot
from sktransfer.transfer import FineTuner, PretrainedFeatures

torch.set_num_threads(1)  # small networks train fastest on one thread
# LogisticRegression warns when a class has a single example; expected here.
warnings.filterwarnings("ignore", message="The number of unique classes is greater")

data = load_omniglot("background_small1")  # 5 alphabets, 28x28 images
greek = list(data.group_names).index("Greek")
is_source = data.groups != greek
print("source alphabets:", [str(a) for a in data.group_names if a != "Greek"])
print(f"source: {is_source.sum()} images of {len(np.unique(data.target[is_source]))} "
      "characters")


def small_cnn():
    """Three conv blocks and two linear layers; the last one is the output layer."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 9, 64), nn.ReLU(), nn.Linear(64, 10))


# %%
# Pretraining is itself a ``FineTuner`` fit: from a factory (random weights),
# everything trains, batch norm statistics included. Its output layer is
# replaced by one with an output per source character.
print("pretraining on the source alphabets (4 epochs)...", flush=True)
source = FineTuner(small_cnn, strategy="full", bn="train", lr=2e-3, max_epochs=4,
                   random_state=0).fit(data.data[is_source], data.target[is_source])

# The target: 10 Greek characters, 20 drawings each.
X_target, y_target = data.data[~is_source], data.target[~is_source]
classes = np.unique(y_target)[:10]
in_task = np.isin(y_target, classes)
X_target, y_target = X_target[in_task], y_target[in_task]

# %%
# The layer groups that ``"top"`` and ``"gradual"`` count come from the
# network's structure: each convolution with its batch norm, each linear
# layer, and the head last.
for group in source.layer_groups_:
    print(group)

# %%
# Every method, every k
# ---------------------
# The fitted source is wrapped in :class:`~sklearn.frozen.FrozenEstimator`,
# so that cloning a ``FineTuner`` (as searches do) keeps it; every fit starts
# from the pretrained weights. Every network trains for 15 epochs on the
# target (``"gradual"`` opens one more group every 3 epochs).
pretrained = FrozenEstimator(source)
methods = {
    "scratch": FineTuner(small_cnn, strategy="full", bn="train", lr=1e-3, max_epochs=15),
    "linear probe": make_pipeline(PretrainedFeatures(pretrained),
                                  LogisticRegression(max_iter=2000)),
    "last": FineTuner(pretrained, strategy="last", lr=1e-2, max_epochs=15),
    "top": FineTuner(pretrained, strategy="top", lr=1e-2, backbone_lr=1e-3, max_epochs=15),
    "full": FineTuner(pretrained, strategy="full", lr=1e-2, backbone_lr=1e-3, max_epochs=15),
    "gradual": FineTuner(pretrained, strategy="gradual", unfreeze_every=3, lr=1e-2,
                         backbone_lr=1e-3, max_epochs=15),
    # lp_ft: the head is fitted first, then everything trains, the backbone at lr / 10
    "lp_ft": FineTuner(pretrained, strategy="lp_ft", lr=1e-3, max_epochs=15),
}


def split(k, seed):
    rng = np.random.RandomState(seed)
    train, test = [], []
    for c in classes:
        idx = rng.permutation(np.flatnonzero(y_target == c))
        train.append(idx[:k])
        test.append(idx[k:])
    return np.concatenate(train), np.concatenate(test)


shots = [1, 2, 5, 10]
seeds = [0, 1]
accuracy = {name: [] for name in methods}
print(f"fitting {len(methods)} methods x {len(shots)} values of k x {len(seeds)} seeds...",
      flush=True)
for k in shots:
    for name, template in methods.items():
        scores = []
        for seed in seeds:
            train, test = split(k, seed)
            model = clone(template)
            if isinstance(model, FineTuner):
                model.set_params(random_state=seed)
            model.fit(X_target[train], y_target[train])
            scores.append(model.score(X_target[test], y_target[test]))
        accuracy[name].append(np.mean(scores))
    print(f"k={k:2d}: " + ", ".join(f"{n} {accuracy[n][-1]:.2f}" for n in methods))

# %%
# Accuracy against examples per class
# -----------------------------------
# The linear probe and ``"lp_ft"`` nearly coincide (see below), so every
# method gets its own marker and line style, and the points of each ``k`` are
# spread a little sideways so that none hides another.
styles = {
    "scratch": dict(color="black", linestyle="--", marker="x"),
    "linear probe": dict(linestyle=":", marker="s", markerfacecolor="none", markersize=8),
    "last": dict(marker="v"),
    "top": dict(marker="^"),
    "full": dict(marker="D", markersize=5),
    "gradual": dict(marker="P"),
    "lp_ft": dict(linestyle="-.", marker="o"),
}
fig, ax = plt.subplots(figsize=(7, 4.5))
offsets = np.linspace(-0.06, 0.06, len(accuracy))  # in log10(k): up to 15% of k
for offset, (name, acc) in zip(offsets, accuracy.items()):
    ax.plot(np.array(shots) * 10 ** offset, acc, label=name, **styles[name])
ax.axhline(1 / len(classes), color="grey", linewidth=0.8, label="chance")
ax.set_xscale("log")
ax.set_xticks(shots, [str(k) for k in shots])
ax.set_xlabel("labelled examples per class (k)")
ax.set_ylabel("test accuracy (10 Greek characters)")
ax.set_title("Omniglot: pretrained on 4 alphabets, adapted to a new one")
ax.legend(fontsize=8, ncol=2)
fig.tight_layout()
plt.show()

# %%
# With one or two drawings per character every use of the pretrained network
# is far ahead of training from scratch (0.66 to 0.73 against 0.13 accuracy
# at k = 1 in this run, chance being 0.10); with ten, scratch training has
# mostly caught up (0.84 against 0.90 to 0.93).
#
# ``"lp_ft"`` is the best here, or tied for best, at every k, and the linear
# probe's line nearly coincides with it (within 0.02): ``"lp_ft"`` *begins*
# with a linear probe (its new head is fitted to convergence on the frozen
# features, the same kind of model as the logistic regression, with another
# L2 strength), and what follows moves the backbone at a tenth of the head's
# rate (``lr=1e-3``, so 1e-4) for 15 epochs on at most 100 images, which
# changes the features, and so the predictions, only a little. Both start
# from the intact pretrained features, the safest choice with this few
# examples. The differences between the other strategies, a few hundredths,
# are within the noise of two seeds and ten classes. The benchmark
# ``benchmarks/bench_transfer.py`` repeats this with three seeds and all 24
# Greek characters (where, from five examples per class on, opening more of
# the network pays off), on MNIST and on a domain shift, and the user guide
# discusses which strategy to use when.
