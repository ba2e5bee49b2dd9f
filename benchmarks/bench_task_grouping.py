"""Task grouping from the inter-task affinity (TAG) against one network and independent ones.

Two settings where sharing can hurt:

1. digits, five binary tasks on the same images (odd digit, digit < 5,
   digit a multiple of 3, digit with a closed loop {0, 6, 8, 9}) and one
   task of random labels (a deliberately harmful task), half the images for
   training and half for testing, an MLP trunk;
2. the negative-transfer setting of ``bench_multitask_accuracy.py``: 10
   Omniglot 5-way tasks, each 5 characters of one background alphabet (15
   drawers for training, 5 for testing), a Conv4 trunk with 32 channels.

For each: one hard-sharing network for all tasks, independent networks
(``architecture="independent"``), and ``TaskGroupedClassifier`` (the
affinity from a short hard-sharing run, the groups of largest total
affinity, one hard-sharing network per group). Mean test accuracy over the
tasks (and over the real tasks, for digits), and the seconds of the
affinity run next to one full training of the hard-sharing network.

Run ``python benchmarks/bench_task_grouping.py`` (``--quick`` for a smoke
run); the Omniglot data come from ``SKTRANSFER_DATA``.
"""

import argparse
import os
import sys
import time

import numpy as np
from sklearn.datasets import load_digits

from sktransfer import MultiTaskClassifier
from sktransfer.base import torch_threads
from sktransfer.multitask import TaskGroupedClassifier

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_multitask_accuracy import omniglot_tasks  # noqa: E402 - the same tasks


def digits_tasks(seed):
    X, d = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    rng = np.random.RandomState(seed)
    Y = np.column_stack([d % 2, d < 5, d % 3 == 0, np.isin(d, [0, 6, 8, 9]),
                         rng.randint(2, size=len(d))]).astype(float)
    order = rng.permutation(len(X))
    half = len(X) // 2
    return (X[order[:half]], Y[order[:half]]), (X[order[half:]], Y[order[half:]])


def _task_accuracies_wide(pred, Y):
    return [float(np.mean(pred[:, k] == Y[:, k])) for k in range(Y.shape[1])]


def _task_accuracies_long(pred, y, t):
    return [float(np.mean(pred[t == k] == y[t == k])) for k in np.unique(t)]


def _fit(est, train):
    start = time.perf_counter()
    if len(train) == 3:  # X, y, task_ids
        est.fit(train[0], train[1], task_ids=train[2])
    else:  # X, Y
        est.fit(*train)
    return time.perf_counter() - start


def _accuracies(est, test):
    if len(test) == 3:
        return _task_accuracies_long(est.predict(test[0], task_ids=test[2]), *test[1:])
    return _task_accuracies_wide(est.predict(test[0]), test[1])


def run_setting(name, base, data, n_seeds, affinity_epochs, affinity_every, lookahead_lr,
                real_tasks=None):
    """Rows of (method, accuracies per seed, real-task accuracies, seconds, groups)."""
    results = {m: {"acc": [], "real": [], "sec": []} for m in ("one network (hard)",
                                                                "independent", "grouped")}
    # warm-up: the first fit of a process pays one-off costs (allocator, kernels)
    warm = MultiTaskClassifier(**{**base.get_params(), "max_epochs": 1})
    _fit(warm, data(0)[0])
    affinity_secs, groups_seen = [], []
    for seed in range(n_seeds):
        train, test = data(seed)
        params = base.get_params()
        estimators = {
            "one network (hard)": MultiTaskClassifier(**{**params, "architecture": "hard",
                                                         "random_state": seed}),
            "independent": MultiTaskClassifier(**{**params, "architecture": "independent",
                                                  "random_state": seed}),
            "grouped": TaskGroupedClassifier(MultiTaskClassifier(**params),
                                             affinity_epochs=affinity_epochs,
                                             affinity_every=affinity_every,
                                             lookahead_lr=lookahead_lr, random_state=seed),
        }
        for method, est in estimators.items():
            secs = _fit(est, train)
            accs = _accuracies(est, test)
            res = results[method]
            res["acc"].append(100 * np.mean(accs))
            if real_tasks is not None:
                res["real"].append(100 * np.mean([accs[k] for k in real_tasks]))
            res["sec"].append(secs)
            if method == "grouped":
                groups_seen.append(est.groups_)
                affinity_secs.append(_affinity_seconds(est, secs))
            print(f"  {name} seed {seed} {method:<20} {res['acc'][-1]:6.2f} "
                  f"({secs:.0f} s)" + (f" groups {est.groups_}" if method == "grouped" else ""),
                  flush=True)
    return results, affinity_secs, groups_seen


def _affinity_seconds(est, total):
    """Seconds of the affinity run: the grouped fit minus its networks' training epochs."""
    groups = sum(sum(e.net_.history[:, "dur"]) for e in est.estimators_)
    return total - groups


def report(title, results, affinity_secs, groups_seen, real=False):
    print(f"\n{title}")
    header = f"{'method':<22}{'accuracy %':>16}"
    if real:
        header += f"{'real tasks %':>16}"
    print(header + f"{'fit s':>8}")
    for method, res in results.items():
        line = f"{method:<22}{np.mean(res['acc']):>8.2f} +- {np.std(res['acc']):<5.2f}"
        if real:
            line += f"{np.mean(res['real']):>8.2f} +- {np.std(res['real']):<5.2f}"
        print(line + f"{np.mean(res['sec']):>8.1f}")
    hard = np.mean(results["one network (hard)"]["sec"])
    print(f"affinity run: {np.mean(affinity_secs):.1f} s ({np.mean(affinity_secs) / hard:.2f} "
          f"x one full hard-sharing training of {hard:.1f} s)")
    for seed, groups in enumerate(groups_seen):
        print(f"  seed {seed} groups: {groups}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=["digits", "omniglot", "all"], default="all")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--omniglot-seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30, help="digits epochs")
    parser.add_argument("--epochs-omniglot", type=int, default=20)
    parser.add_argument("--affinity-epochs", type=int, default=5)
    parser.add_argument("--n-tasks", type=int, default=10)
    parser.add_argument("--every", type=int, default=4,
                        help="Omniglot: measure the affinity at every k-th step")
    args = parser.parse_args()
    if args.quick:
        args.seeds = args.omniglot_seeds = 1
        args.epochs, args.epochs_omniglot, args.affinity_epochs, args.n_tasks = 5, 2, 1, 4
    with torch_threads(1):
        if args.part in ("digits", "all"):
            base = MultiTaskClassifier(hidden_layer_sizes=(64,), lr=0.01, batch_size=64,
                                       max_epochs=args.epochs)
            out = run_setting("digits", base, digits_tasks, args.seeds, args.affinity_epochs,
                              1, 0.1, real_tasks=[0, 1, 2, 3])
            report(f"Digits: 4 binary tasks + 1 of random labels, MLP(64), {args.epochs} "
                   f"epochs, affinity over {args.affinity_epochs} epochs, {args.seeds} seeds; "
                   "mean test accuracy over the 5 tasks and over the 4 real ones",
                   *out, real=True)
        if args.part in ("omniglot", "all"):
            if not os.environ.get("SKTRANSFER_DATA"):
                print("set SKTRANSFER_DATA to the folder holding omniglot/")
            from sktransfer.modules import Conv4

            def conv():
                return Conv4(hidden_channels=32)

            base = MultiTaskClassifier(module=conv, lr=1e-3, batch_size=64,
                                       max_epochs=args.epochs_omniglot)
            n_tasks = args.n_tasks
            out = run_setting("omniglot", base, lambda seed: omniglot_tasks(n_tasks, seed),
                              args.omniglot_seeds, args.affinity_epochs, args.every, None)
            report(f"Omniglot: {n_tasks} 5-way tasks (one alphabet each), Conv4-32, "
                   f"{args.epochs_omniglot} epochs, affinity over {args.affinity_epochs} "
                   f"epochs (every {args.every}th step), {args.omniglot_seeds} seeds; mean "
                   "per-task test accuracy (chance 20%)", *out)


if __name__ == "__main__":
    main()
