"""MAML on sinusoid regression: MSE after 1 and 10 inner steps, K = 5 and 10.

Tasks as in the MAML paper (``make_sinusoid_tasks``: amplitude U[0.1, 5],
phase U[0, pi], x U[-5, 5]); the network has two hidden layers of 40 ReLUs;
meta-batch 25 tasks, one inner step in training. One model is meta-trained
per K (support points per task; K query points too). Evaluation: 300 new
tasks, K support points drawn at random, MSE on 100 points spread over
[-5, 5], after 1 and after 10 inner steps.

The pretrain-then-fine-tune baseline is the same network trained on all
tasks pooled (``MAMLRegressor`` with ``inner_steps=0``: plain regression on
random tasks' points), then fine-tuned with the same inner steps.

``MAMLRegressor`` standardises targets (the sinusoids' y has a standard
deviation of about 2.05), so ``inner_lr=0.04`` corresponds to the paper's
step 0.01 on raw targets (0.01 * 2.05**2). The published MAML numbers (1
step; Li et al., 2017, table 1) are 1.13 (K=5) and 0.77 (K=10) after 70,000
meta-iterations; the budget here is printed with the table.

Run ``python benchmarks/bench_sinusoid.py`` (``--quick`` for a quarter of the
iterations).
"""

import argparse
import os
import time

import numpy as np
import torch

from sktransfer.datasets import make_sinusoid_tasks
from sktransfer.meta import MAMLRegressor

PUBLISHED = {5: 1.13, 10: 0.77}


def evaluate(model, k, n_tasks=300, seed=123):
    rng = np.random.RandomState(seed)
    _, _, _, amp, phase = make_sinusoid_tasks(n_tasks=n_tasks, n_samples_per_task=1,
                                              return_params=True, random_state=seed)
    grid = np.linspace(-5, 5, 100, dtype=np.float32)[:, None]
    out = {}
    for steps in (1, 10):
        model.set_params(inner_steps_test=steps)
        errors = []
        for a, p in zip(amp, phase):
            xs = rng.uniform(-5, 5, size=(k, 1)).astype(np.float32)
            ys = (a * np.sin(xs[:, 0] - p)).astype(np.float32)
            pred = model.adapt(xs, ys).predict(grid)
            errors.append(np.mean((pred - a * np.sin(grid[:, 0] - p)) ** 2))
        out[steps] = (float(np.mean(errors)), float(1.96 * np.std(errors) / np.sqrt(n_tasks)))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("SKTRANSFER_NUM_THREADS", "1")
    iterations = 500 if args.quick else 2000
    X, y, tasks = make_sinusoid_tasks(n_tasks=5000, n_samples_per_task=40, random_state=0)
    print(f"{iterations} meta-iterations x 25 tasks per model, 5,000 training tasks of 40 "
          "points; 300 test tasks")
    header = (f"{'K':>3}  {'method':<24}{'1 step':>14}{'10 steps':>14}{'published 1 step':>18}"
              f"{'train s':>9}")
    print(header)
    print("-" * len(header))
    for k in (5, 10):
        for name, inner_steps in (("MAML", 1), ("pretrain + fine-tune", 0)):
            model = MAMLRegressor(k_shot=k, n_query=k, inner_lr=0.04, inner_steps=inner_steps,
                                  batch_size=25, episodes_per_epoch=25 * iterations // 10,
                                  max_epochs=10, lr=1e-3, random_state=0)
            start = time.perf_counter()
            model.fit(X, y, groups=tasks)
            seconds = time.perf_counter() - start
            res = evaluate(model, k)
            pub = f"{PUBLISHED[k]:.2f}" if name == "MAML" else "-"
            print(f"{k:>3}  {name:<24}{res[1][0]:>8.2f}+-{res[1][1]:<4.2f}"
                  f"{res[10][0]:>8.2f}+-{res[10][1]:<4.2f}{pub:>18}{seconds:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
