"""
=====================================================
Few-shot learning on Omniglot: accuracy against shots
=====================================================

Few-shot classifiers learn, from many classes, how to learn new classes
from a handful of examples. We meta-train on four alphabets of Omniglot's
"minimal" background set (:func:`~sktransfer.datasets.load_omniglot`,
``"background_small1"``: 5 alphabets, 136 characters, 20 drawings each) and
test on the fifth alphabet, whose characters the models never saw:

* :class:`~sktransfer.meta.PrototypicalClassifier` (episodic training; a
  query goes to the nearest class mean in the learned embedding);
* :class:`~sktransfer.meta.BaselineFewShotClassifier` with a cosine head
  (Baseline++: ordinary training on all base classes, then a new head on
  the support set).

:func:`~sktransfer.metrics.few_shot_score` draws 5-way K-shot episodes from
the held-out alphabet, adapts each model to the K labelled examples of every
class with ``adapt`` and reports the mean query accuracy with a 95%
confidence interval, the way papers do.
"""

# %%
# Data: four alphabets to learn from, one held out
# ------------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
import torch

from sktransfer.datasets import load_omniglot
from sktransfer.meta import BaselineFewShotClassifier, PrototypicalClassifier
from sktransfer.metrics import few_shot_score
from sktransfer.modules import Conv4

torch.set_num_threads(1)
data = load_omniglot("background_small1")  # (2720, 1, 28, 28) in [0, 1]
X, y, alphabets = data.data, data.target, data.groups
held_out = alphabets == np.unique(alphabets)[-1]
print(f"train: {len(np.unique(y[~held_out]))} characters, "
      f"test: {len(np.unique(y[held_out]))} new characters")


def small_conv4():
    return Conv4(hidden_channels=32)


# %%
# Meta-train a prototypical network, train a Baseline++
# -----------------------------------------------------
# A short budget for one CPU thread: 80 training episodes (20-way 1-shot, 5
# queries per class) for the prototypical network, two epochs over the 2,200
# training images for Baseline++, whose ``adapt`` then trains the new head
# for 50 steps.
print("meta-training the prototypical network (80 episodes)...", flush=True)
proto = PrototypicalClassifier(module=small_conv4, n_way=20, k_shot=1, n_query=5,
                               episodes_per_epoch=80, max_epochs=1, random_state=0)
proto.fit(X[~held_out], y[~held_out], groups=alphabets[~held_out])

print("training Baseline++ (2 epochs)...", flush=True)
baseline = BaselineFewShotClassifier(module=small_conv4, head="cosine", max_epochs=2,
                                     adapt_steps=50, random_state=0)
baseline.fit(X[~held_out], y[~held_out])

# %%
# Accuracy against the number of shots
# ------------------------------------
# 25 episodes of 5-way K-shot tasks from the held-out alphabet for each K.
shots = [1, 2, 5, 10]
fig, ax = plt.subplots(figsize=(5, 3.5))
for name, model in [("ProtoNet", proto), ("Baseline++", baseline)]:
    print(f"scoring {name} on new characters...", flush=True)
    scores = [few_shot_score(model, X[held_out], y[held_out], n_way=5, k_shot=k, n_query=5,
                             n_episodes=25, random_state=0) for k in shots]
    means, cis = np.array(scores).T
    ax.errorbar(shots, 100 * means, yerr=100 * cis, marker="o", capsize=3, label=name)
    print(name, " ".join(f"{k}-shot {100 * m:.1f}+-{100 * c:.1f}"
                         for k, m, c in zip(shots, means, cis)))
ax.axhline(20, color="gray", ls=":", label="chance")
ax.set_xscale("log")
ax.set_xticks(shots, [str(k) for k in shots])
ax.set_xlabel("shots (labelled examples per new class)")
ax.set_ylabel("5-way accuracy on new characters (%)")
ax.legend()
fig.tight_layout()
plt.show()

# %%
# Both recognise characters they never saw from a handful of drawings: in
# this run the prototypical network's 5-way accuracy is 80% from one drawing
# per character and 93% from ten (chance is 20%), Baseline++'s 67% and 88%.
# With this short budget the episodic training, which practises exactly the
# test task, is ahead at every K; the user guide's Omniglot benchmark trains
# both longer, on more alphabets, where Baseline++ comes closer (5-way 5-shot
# 96.8% against 98.3%).
#
# A model adapted to one task
# ---------------------------
# ``adapt`` returns a new fitted estimator for the support set's classes; the
# meta-trained model is unchanged and can adapt to the next task.
rng = np.random.RandomState(0)
classes = rng.choice(np.unique(y[held_out]), 5, replace=False)
support = np.concatenate([np.flatnonzero(y == c)[:1] for c in classes])
query = np.concatenate([np.flatnonzero(y == c)[1:] for c in classes])
task_model = proto.adapt(X[support], y[support])
print("classes:", task_model.classes_, "accuracy:", task_model.score(X[query], y[query]))
