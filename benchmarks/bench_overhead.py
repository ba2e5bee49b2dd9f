"""Time per epoch of MultiTaskClassifier against a hand-written PyTorch loop.

Both train the same network (the estimator's own module, copied), on the
same data, with the same batch size, optimizer, loss and task weighting;
the hand-written loop slices shuffled tensors, the way a careful user
writes it. They run alternately in one process, so machine noise hits both.
The table reports the fastest epoch of each (noise from other processes only
ever adds time, so the minimum is the steadiest estimate of the work done)
and their ratio, and the ratio of the median epochs as well.

The hand-written loop uses ``torch.optim.Adam(params, lr=1e-3)``, as a user
writes it (PyTorch's per-tensor implementation on the CPU); the estimators
use the fused Adam kernel, their default. The last column compares the
estimator with the hand-written loop given ``fused=True`` as well, so it is
the overhead of the package alone.

Run ``python benchmarks/bench_overhead.py`` (``--quick`` for a short run).
"""

import argparse
import copy
import statistics
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

from sktransfer import MultiTaskClassifier
from sktransfer.base import torch_threads


def make_problem(n_repeat):
    """Digits, two tasks per row-group: 'which digit' and 'which digit mod 3'."""
    X, y = load_digits(return_X_y=True)
    X = np.tile((X / 16.0).astype(np.float32), (n_repeat, 1))
    y = np.tile(y, n_repeat)
    task = np.arange(len(y)) % 2
    y = np.where(task == 0, y, y % 3)
    return X, y, task


def hand_written_epoch(module, opt, X, y, t, batch_size, n_tasks):
    """One epoch of the plain loop: shuffle, slice, forward, per-task CE, backward."""
    n = X.shape[0]
    order = torch.randperm(n)
    module.train()
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        xb, yb, tb = X[idx], y[idx], t[idx]
        opt.zero_grad()
        logits = module(xb, tb)
        losses = torch.nn.functional.cross_entropy(logits, yb, reduction="none")
        per_task = torch.zeros(n_tasks).index_add(0, tb, losses) / torch.bincount(
            tb, minlength=n_tasks).clamp(min=1)
        per_task.sum().backward()
        opt.step()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs and repeats")
    args = parser.parse_args()
    epochs = 3 if args.quick else 15
    rows = []
    with torch_threads(1):
        for hidden, batch_size, n_repeat in [((64,), 64, 5), ((256, 256), 128, 5),
                                              ((512, 512, 512), 256, 5)]:
            X, y, t = make_problem(n_repeat)
            est = MultiTaskClassifier(hidden_layer_sizes=hidden, batch_size=batch_size,
                                      max_epochs=1, random_state=0)
            est.fit(X, y, task_ids=t)  # builds the module and the label encoding
            # The same network and loss, trained by hand.
            module = copy.deepcopy(est.net_.module_)
            Xt = torch.as_tensor(X)
            yt = torch.as_tensor(np.where(t == 0, y, y % 3), dtype=torch.int64)
            tt = torch.as_tensor(t, dtype=torch.int64)
            opt = torch.optim.Adam(module.parameters(), lr=1e-3)
            module_fused = copy.deepcopy(est.net_.module_)
            opt_fused = torch.optim.Adam(module_fused.parameters(), lr=1e-3, fused=True)
            est.set_params(max_epochs=1)
            t_est, t_hand, t_fused = [], [], []
            for _ in range(epochs):
                t0 = time.perf_counter()
                est.net_.partial_fit(est._inputs(X, t), yt)
                t_est.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                hand_written_epoch(module, opt, Xt, yt, tt, batch_size, 2)
                t_hand.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                hand_written_epoch(module_fused, opt_fused, Xt, yt, tt, batch_size, 2)
                t_fused.append(time.perf_counter() - t0)
            # A full fit() too (validation, seeding, net construction included).
            t0 = time.perf_counter()
            MultiTaskClassifier(hidden_layer_sizes=hidden, batch_size=batch_size,
                                max_epochs=epochs, random_state=0).fit(X, y, task_ids=t)
            t_fit = (time.perf_counter() - t0) / epochs
            me, mh = min(t_est), min(t_hand)
            median = statistics.median(t_est) / statistics.median(t_hand)
            rows.append((f"MLP {hidden}", batch_size, X.shape[0], me, mh, me / mh, median,
                         t_fit / mh, me / min(t_fused)))
    print(f"{'network':<22}{'batch':>6}{'rows':>7}{'estimator s':>13}{'hand s':>9}"
          f"{'ratio':>8}{'median ratio':>14}{'fit()/hand':>12}{'vs fused hand':>15}")
    for name, bs, n, me, mh, r, rm, rf, rfu in rows:
        print(f"{name:<22}{bs:>6}{n:>7}{me:>13.4f}{mh:>9.4f}{r:>8.3f}{rm:>14.3f}{rf:>12.3f}"
              f"{rfu:>15.3f}")
    print("ratio: fastest epoch of net_.partial_fit over the fastest epoch of the hand-written")
    print("loop (same module, data, batch size, Adam as a user writes it); median ratio: the")
    print("same for medians;")
    print("fit()/hand: a whole fit() per epoch (validation, seeding, set-up) over the loop;")
    print("vs fused hand: the estimator's epoch over the loop's with Adam(fused=True).")
    with torch_threads(1):
        fit_table(repeats=3 if args.quick else 7)
        finetuner_table(epochs)
        search_table(epochs=2 if args.quick else 5)


def fit_table(repeats, epochs=5):
    """A whole fit() against the whole hand-written loop: tensors, module, optimizer, epochs."""
    X, y, t = make_problem(5)
    template = MultiTaskClassifier(hidden_layer_sizes=(64,), batch_size=64, max_epochs=1,
                                   random_state=0).fit(X, y, task_ids=t).net_.module_

    def hand_fit():
        torch.manual_seed(0)
        Xt = torch.as_tensor(X)
        yt = torch.as_tensor(y, dtype=torch.int64)
        tt = torch.as_tensor(t, dtype=torch.int64)
        module = copy.deepcopy(template)  # the same architecture, freshly initialised
        for layer in module.modules():
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        opt = torch.optim.Adam(module.parameters(), lr=1e-3, fused=True)
        for _ in range(epochs):
            hand_written_epoch(module, opt, Xt, yt, tt, 64, 2)

    def est_fit():
        MultiTaskClassifier(hidden_layer_sizes=(64,), batch_size=64, max_epochs=epochs,
                            random_state=0).fit(X, y, task_ids=t)

    t_est, t_hand = [], []
    for _ in range(repeats):
        for fn, out in ((est_fit, t_est), (hand_fit, t_hand)):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    me, mh = min(t_est), min(t_hand)
    print(f"\nWhole fit, MLP (64,), batch 64, {len(X)} rows, {epochs} epochs (fastest of "
          f"{repeats}): fit() {me:.4f} s against {mh:.4f} s for the hand-written loop with "
          f"Adam(fused=True), module and optimizer built inside, ratio {me / mh:.3f} "
          f"(medians {statistics.median(t_est) / statistics.median(t_hand):.3f})")


def finetuner_table(epochs):
    """An epoch of FineTuner (full, L2-SP) against a hand loop with the same penalty."""
    from sktransfer.transfer import FineTuner

    X, y, _ = make_problem(5)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    torch.manual_seed(0)
    source = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                 torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                 torch.nn.Linear(256, 10))
    alpha = 0.01
    ft = FineTuner(source, strategy="full", l2sp_alpha=alpha, lr=1e-3, max_epochs=1,
                   batch_size=64, random_state=0).fit(X, y)
    module = copy.deepcopy(ft.net_.module_)
    backbone = [p for name, p in module.named_parameters() if not name.startswith("4.")]
    anchor = [p.detach().clone() for p in backbone]
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)

    def hand_epoch():
        order = torch.randperm(len(Xt))
        for start in range(0, len(Xt), 64):
            idx = order[start:start + 64]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(module(Xt[idx]), yt[idx])
            loss = loss + 0.5 * alpha * sum(((p - a) ** 2).sum() for p, a in zip(backbone, anchor))
            loss.backward()
            opt.step()

    t_est, t_hand = [], []
    for _ in range(epochs):
        t0 = time.perf_counter()
        ft.net_.partial_fit(Xt, yt, epochs=1)
        t_est.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        hand_epoch()
        t_hand.append(time.perf_counter() - t0)
    me, mh = min(t_est), min(t_hand)
    print(f"\nFineTuner (full, L2-SP), MLP 64-256-256-10, batch 64, {len(X)} rows: "
          f"{me:.4f} s per epoch against {mh:.4f} s by hand (same penalty), ratio {me / mh:.3f}")


def search_table(epochs):
    """20 small fits in a GridSearchCV against the same 20 fits one after another."""
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, KFold, ParameterGrid

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    est = MultiTaskClassifier(hidden_layer_sizes=(64,), max_epochs=epochs, random_state=0)
    grid = {"lr": [1e-3, 2e-3, 5e-3, 1e-2, 2e-2], "batch_size": [32, 64]}
    cv = KFold(2)
    clone(est).fit(X, y)  # the process's one-time costs (imports, first allocations)
    rounds = []
    for _ in range(2):
        t0 = time.perf_counter()
        for params in ParameterGrid(grid):
            for train, test in cv.split(X):
                clone(est).set_params(**params).fit(X[train], y[train]).score(X[test], y[test])
        alone = time.perf_counter() - t0
        t0 = time.perf_counter()
        GridSearchCV(est, grid, cv=cv, refit=False).fit(X, y)
        searched = time.perf_counter() - t0
        rounds.append((alone, searched))
    alone, searched = (sum(r[i] for r in rounds) / len(rounds) for i in (0, 1))
    print(f"\nGridSearchCV of 20 fits (MLP (64,), {epochs} epochs, digits): {searched / 20:.4f} s "
          f"per fit against {alone / 20:.4f} s for the same fits alone, ratio "
          f"{searched / alone:.3f}")


if __name__ == "__main__":
    main()
