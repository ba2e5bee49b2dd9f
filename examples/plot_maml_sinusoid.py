"""
=====================================
MAML on sinusoids: fast adaptation
=====================================

The toy problem of the MAML paper (Finn et al., 2017): every task is a
sinusoid ``y = A sin(x - phi)`` with its own amplitude and phase
(:func:`~sktransfer.datasets.make_sinusoid_tasks`). From K = 10 points of a
new sinusoid, a model must predict the whole curve.

* :class:`~sktransfer.meta.MAMLRegressor` meta-learns an initialisation from
  which one gradient step on the K points fits the task;
* the pretrain-then-fine-tune baseline (the same estimator with
  ``inner_steps=0``: ordinary regression on all tasks pooled) learns the
  average of all sinusoids, about zero, and fine-tuning from there moves
  slowly.

The plot shows both after 0, 1 and 10 gradient steps, as in the paper's
figure 2.
"""

# %%
# Meta-train on sinusoid tasks
# ----------------------------
import matplotlib.pyplot as plt
import numpy as np
import torch

from sktransfer.datasets import make_sinusoid_tasks
from sktransfer.meta import MAMLRegressor

torch.set_num_threads(1)
X, y, tasks = make_sinusoid_tasks(n_tasks=2000, n_samples_per_task=20, random_state=0)

common = dict(k_shot=10, n_query=10, inner_lr=0.04, batch_size=25, episodes_per_epoch=5000,
              max_epochs=4, lr=2e-3, random_state=0)
maml = MAMLRegressor(inner_steps=1, **common).fit(X, y, groups=tasks)
pretrained = MAMLRegressor(inner_steps=0, **common).fit(X, y, groups=tasks)

# %%
# Adapt to a new sinusoid from K = 10 points
# ------------------------------------------
_, _, _, amp, phase = make_sinusoid_tasks(n_tasks=1, return_params=True, random_state=7)
rng = np.random.RandomState(3)
xs = rng.uniform(-5, 5, size=(10, 1)).astype(np.float32)
ys = amp[0] * np.sin(xs[:, 0] - phase[0])
grid = np.linspace(-5, 5, 200, dtype=np.float32)[:, None]
truth = amp[0] * np.sin(grid[:, 0] - phase[0])

fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
for ax, (name, model) in zip(axes, [("MAML", maml), ("pretrained, fine-tuned", pretrained)]):
    ax.plot(grid, truth, "k", lw=2, label="ground truth")
    for steps, style in [(0, ":"), (1, "--"), (10, "-")]:
        adapted = model.set_params(inner_steps_test=steps).adapt(xs, ys)
        mse = np.mean((adapted.predict(grid) - truth) ** 2)
        ax.plot(grid, adapted.predict(grid), style, label=f"{steps} steps (MSE {mse:.2f})")
    ax.scatter(xs, ys, color="red", zorder=3, label="K = 10 points")
    ax.set_title(name)
    ax.set_xlabel("x")
    ax.legend(fontsize=7)
axes[0].set_ylabel("y")
fig.tight_layout()
plt.show()
