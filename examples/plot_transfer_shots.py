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
source = FineTuner(small_cnn, strategy="full", bn="train", lr=2e-3, max_epochs=5,
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
# from the pretrained weights.
pretrained = FrozenEstimator(source)
methods = {
    "scratch": FineTuner(small_cnn, strategy="full", bn="train", lr=1e-3, max_epochs=30),
    "linear probe": make_pipeline(PretrainedFeatures(pretrained),
                                  LogisticRegression(max_iter=2000)),
    "last": FineTuner(pretrained, strategy="last", lr=1e-2, max_epochs=30),
    "top": FineTuner(pretrained, strategy="top", lr=1e-2, backbone_lr=1e-3, max_epochs=30),
    "full": FineTuner(pretrained, strategy="full", lr=1e-2, backbone_lr=1e-3, max_epochs=30),
    "gradual": FineTuner(pretrained, strategy="gradual", unfreeze_every=5, lr=1e-2,
                         backbone_lr=1e-3, max_epochs=30),
    # lp_ft: the head is fitted first, then everything trains, the backbone at lr / 10
    "lp_ft": FineTuner(pretrained, strategy="lp_ft", lr=1e-3, max_epochs=30),
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
fig, ax = plt.subplots(figsize=(7, 4.5))
for name, acc in accuracy.items():
    style = dict(color="black", linestyle="--") if name == "scratch" else {}
    ax.plot(shots, acc, marker="o", label=name, **style)
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
# is far ahead of training from scratch (about 0.75 against 0.25 accuracy at
# k = 1 in this run); with ten, scratch training has mostly caught up. The
# strategies that keep the pretrained features intact at the start (the
# linear probe, ``"last"`` and ``"lp_ft"``) are the safest with the fewest
# examples; opening more of the network pays off as examples are added. The
# benchmark ``benchmarks/bench_transfer.py`` repeats this with three seeds, on
# MNIST and on a domain shift, and the user guide discusses which strategy to
# use when.
