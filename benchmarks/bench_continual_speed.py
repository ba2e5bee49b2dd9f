"""Speed of the continual-learning machinery.

1. **Fisher information** over 1,000 samples of an MLP 784-256-256-10:
   the fast path (closed form for ``nn.Linear`` from forward/backward hooks),
   ``torch.func.vmap(grad)`` (``jacrev`` over classes for the exact Fisher)
   and a loop of per-sample backward passes, for the exact and the
   empirical Fisher. The three agree to rounding; the table reports times
   and the speed-up of the fast path over the loop.
2. **Training overhead of EWC** over naive fine-tuning, per epoch, after 2
   and after 20 tasks (permuted MNIST-style tasks): the penalty of all past
   tasks is kept as two running tensors, so the ratio should not grow with
   the number of tasks. Naive and EWC learn the same tasks alternately in
   one process, so machine noise hits both; each entry is the fastest of
   the task's epochs (the least disturbed by other processes).

3. **Against a hand-written loop**: an epoch of naive fine-tuning and an
   epoch of EWC (the second task, with the first task's penalty) against a
   plain PyTorch loop training a copy of the same module on the same rows
   with the same optimizer and batch size, the EWC loop adding the same
   quadratic penalty's gradient ``lambda * F * (w - w*)`` after the backward
   pass; fastest epoch of each.

Run ``python benchmarks/bench_continual_speed.py`` (``--quick`` for a short
run). MNIST is read from ``SKTRANSFER_DATA`` when available, else random
pixels of the same shape are used (timings do not depend on the data).
"""

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn

from sktransfer.base import torch_threads
from sktransfer.continual import ContinualClassifier, EWCContinualClassifier, fisher_diagonal
from sktransfer.datasets import make_permuted_tasks


def load_data(n):
    try:
        from sktransfer.datasets import load_mnist

        d = load_mnist("test", flatten=True)
        return d.data[:n].astype(np.float32), d.target[:n], "MNIST (test set)"
    except Exception:  # no local copy: random pixels of the same shape
        rng = np.random.RandomState(0)
        return rng.rand(n, 784).astype(np.float32), rng.randint(10, size=n), "random pixels"


def timed(fn, repeat):
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def bench_fisher(X, y, n_loop, repeat):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                          nn.Linear(256, 10))
    Xt, yt = torch.as_tensor(X[:1000]), torch.as_tensor(y[:1000]).long()
    print(f"\nFisher over {len(Xt)} samples, MLP 784-256-256-10 "
          f"(loop timed on {n_loop} samples and scaled)")
    print(f"{'kind':<10} {'fast path':>10} {'vmap':>10} {'loop':>10} {'loop/fast':>10} "
          f"{'vmap/fast':>10} {'max rel err':>12}")
    for kind in ("exact", "empirical"):
        fisher_diagonal(model, Xt[:8], yt[:8], kind=kind, method="hooks")  # warm-up
        t_fast, f_fast = timed(lambda k=kind: fisher_diagonal(model, Xt, yt, kind=k,
                                                              method="hooks"), repeat)
        fisher_diagonal(model, Xt[:8], yt[:8], kind=kind, method="vmap")  # warm-up
        t_vmap, f_vmap = timed(lambda k=kind: fisher_diagonal(model, Xt, yt, kind=k,
                                                              method="vmap"), 1)
        Xs, ys = Xt[:n_loop], yt[:n_loop]
        t_loop, f_loop = timed(lambda k=kind, a=Xs, b=ys: fisher_diagonal(model, a, b, kind=k,
                                                                          method="loop"), 1)
        t_loop *= len(Xt) / n_loop
        f_small = fisher_diagonal(model, Xs, ys, kind=kind, method="hooks")
        err = max(float((f_small[n] - f_loop[n]).norm() / f_loop[n].norm()) for n in f_loop)
        err = max(err, max(float((f_vmap[n] - f_fast[n]).norm() / f_fast[n].norm())
                           for n in f_fast))
        print(f"{kind:<10} {t_fast:>9.3f}s {t_vmap:>9.3f}s {t_loop:>9.3f}s "
              f"{t_loop / t_fast:>9.1f}x {t_vmap / t_fast:>9.1f}x {err:>12.1e}")


def bench_overhead(X, y, checkpoints, n_per_task, epochs):
    n_tasks = max(checkpoints)
    Xs, ys, t = make_permuted_tasks(X[:n_per_task], y[:n_per_task], n_tasks=n_tasks,
                                    random_state=0)
    common = dict(scenario="domain", hidden_layer_sizes=(256, 256), max_epochs=epochs,
                  batch_size=64, random_state=0)
    models = {
        "naive": ContinualClassifier(strategy="naive", **common),
        "EWC": EWCContinualClassifier(ewc_lambda=100.0, fisher_n_samples=200, **common),
        "online EWC": EWCContinualClassifier(ewc_lambda=100.0, gamma=0.9,
                                             fisher_n_samples=200, **common),
    }
    durations = {name: {} for name in models}
    for k in range(n_tasks):
        rows = t == k
        for name, model in models.items():
            before = len(model.net_.history) if hasattr(model, "net_") else 0
            model.partial_fit(Xs[rows], ys[rows], classes=np.arange(10) if k == 0 else None)
            durs = model.net_.history[before:, "dur"]
            if k + 1 in checkpoints:
                durations[name][k + 1] = min(durs)
    print(f"\nTime per epoch ({n_per_task} samples, MLP 784-256-256-10, batch 64), "
          f"fastest of {epochs} epochs")
    print(f"{'tasks learned':<14}" + "".join(f"{name:>14}" for name in models)
          + "".join(f"{name + '/naive':>18}" for name in list(models)[1:]))
    for c in checkpoints:
        # the epochs of task c are trained with the penalty of the c - 1 tasks before it
        row = f"{c:<14}" + "".join(f"{durations[n][c]:>13.3f}s" for n in models)
        row += "".join(f"{durations[n][c] / durations['naive'][c]:>17.2f}x"
                       for n in list(models)[1:])
        print(row)


def _hand_epoch(module, opt, X, y, batch_size, penalty=None):
    """One epoch of the plain loop: shuffle, slice, forward, CE, backward (+ penalty), step."""
    order = torch.randperm(X.shape[0])
    module.train()
    for start in range(0, X.shape[0], batch_size):
        idx = order[start:start + batch_size]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(module(X[idx]), y[idx])
        loss.backward()
        if penalty is not None:
            lam, fisher, anchor = penalty
            with torch.no_grad():
                for p, f, a in zip(module.parameters(), fisher, anchor):
                    p.grad.add_(f * (p - a), alpha=lam)
        opt.step()


def bench_vs_hand(X, y, n, epochs):
    Xs, ys, t = make_permuted_tasks(X[:n], y[:n], n_tasks=2, random_state=0)
    common = dict(scenario="domain", hidden_layer_sizes=(256, 256), max_epochs=epochs,
                  batch_size=64, random_state=0)
    print(f"\nAgainst a hand-written loop ({n} samples, MLP 784-256-256-10, batch 64), "
          f"fastest of {epochs} epochs of the second task")
    print(f"{'method':<10} {'estimator s':>12} {'hand s':>9} {'ratio':>7}")
    for name, est in (("naive", ContinualClassifier(strategy="naive", **common)),
                      ("EWC", EWCContinualClassifier(ewc_lambda=100.0, fisher_n_samples=200,
                                                     **common))):
        est.partial_fit(Xs[t == 0], ys[t == 0], classes=np.arange(10))
        before = len(est.net_.history)
        est.partial_fit(Xs[t == 1], ys[t == 1])
        t_est = min(est.net_.history[before:, "dur"])
        module = copy.deepcopy(est.net_.module_)
        net = nn.Sequential(module.trunk, nn.Flatten(), module.heads[0])
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        penalty = None
        if name == "EWC":
            params = list(net.parameters())
            penalty = (100.0, [torch.rand_like(p) for p in params],
                       [p.detach().clone() for p in params])
        Xh, yh = torch.as_tensor(Xs[t == 1]), torch.as_tensor(ys[t == 1]).long()
        t_hand = []
        for _ in range(epochs):
            t0 = time.perf_counter()
            _hand_epoch(net, opt, Xh, yh, 64, penalty)
            t_hand.append(time.perf_counter() - t0)
        print(f"{name:<10} {t_est:>11.4f}s {min(t_hand):>8.4f}s {t_est / min(t_hand):>7.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    X, y, source = load_data(2000)
    print(f"data: {source}; torch {torch.__version__}, 1 thread")
    with torch_threads(1):
        if args.quick:
            bench_fisher(X, y, n_loop=50, repeat=2)
            bench_overhead(X, y, checkpoints=(2, 5), n_per_task=1000, epochs=2)
            bench_vs_hand(X, y, n=1000, epochs=3)
        else:
            bench_fisher(X, y, n_loop=200, repeat=3)
            bench_overhead(X, y, checkpoints=(2, 20), n_per_task=2000, epochs=3)
            bench_vs_hand(X, y, n=2000, epochs=5)


if __name__ == "__main__":
    main()
