"""Accuracy of multi-task weighting schemes and architectures on real data.

Part 1, MultiMNIST (Sener & Koltun, 2018): two overlapping MNIST digits per
image, tasks "left digit" and "right digit", a LeNet trunk with one head per
task. Single-task networks, equal, uncertainty, GradNorm, MGDA-UB, PCGrad and
a well-regularised equal-weighting baseline (weight decay and dropout), each
over several seeds. Pairs are built from the MNIST test split (the only one
shipped with the reference data): images 0-7999 for training pairs, 8000-9999
for test pairs, so no digit image appears on both sides.

Part 2, negative transfer: many 5-way tasks from one data set (Omniglot
background alphabets: each task is 5 characters of one alphabet, 15 drawers
for training and 5 for testing), comparing ``independent``, ``hard``,
``conditioned`` and ``cross_stitch`` networks.

Run ``python benchmarks/bench_multitask_accuracy.py`` (``--quick`` for a
smoke run); the data come from ``SKTRANSFER_DATA``.
"""

import argparse
import os
import time

import numpy as np
import torch

from sktransfer import MultiTaskClassifier
from sktransfer.base import torch_threads
from sktransfer.datasets import load_mnist, load_omniglot, make_multi_mnist
from sktransfer.multitask import TaskConditioning

PUBLISHED = {"pcgrad": (96.58, 95.50), "mgda_ub": (96.45, 94.95)}


def lenet(dropout=0.0):
    """The MultiLeNet trunk of Sener & Koltun: two conv layers and a 50-unit layer."""
    def make():
        return torch.nn.Sequential(
            torch.nn.Conv2d(1, 10, 5), torch.nn.MaxPool2d(2), torch.nn.ReLU(),
            torch.nn.Conv2d(10, 20, 5), torch.nn.MaxPool2d(2), torch.nn.ReLU(),
            torch.nn.Flatten(), torch.nn.Dropout(dropout), torch.nn.Linear(320, 50),
            torch.nn.ReLU(), torch.nn.Dropout(dropout))
    return make


def multimnist(args):
    X, y = load_mnist("test", return_X_y=True)
    X_tr, Y_tr = make_multi_mnist(X[:8000], y[:8000], n_samples=args.n_train, random_state=0)
    X_te, Y_te = make_multi_mnist(X[8000:], y[8000:], n_samples=args.n_test, random_state=1)
    base = dict(module=lenet(), max_epochs=args.epochs, lr=args.lr, batch_size=args.batch_size)
    methods = {
        "single-task": dict(architecture="independent"),
        "equal": dict(weighting="equal"),
        "uncertainty": dict(weighting="uncertainty"),
        "gradnorm": dict(weighting="gradnorm"),
        "mgda_ub": dict(weighting="mgda_ub"),
        "pcgrad": dict(weighting="pcgrad"),
        "equal + wd + dropout": dict(weighting="equal", module=lenet(0.2),
                                     net_params={"optimizer__weight_decay": 1e-4}),
    }
    rows = []
    for name, kwargs in methods.items():
        accs, secs = [], []
        for seed in range(args.seeds):
            start = time.perf_counter()
            clf = MultiTaskClassifier(**{**base, **kwargs, "random_state": seed})
            clf.fit(X_tr, Y_tr)
            secs.append(time.perf_counter() - start)
            pred = clf.predict(X_te)
            accs.append([100 * np.mean(pred[:, k] == Y_te[:, k]) for k in range(2)])
            print(f"  {name:<22} seed {seed}: left {accs[-1][0]:.2f} right {accs[-1][1]:.2f} "
                  f"({secs[-1]:.0f} s)", flush=True)
        accs = np.array(accs)
        rows.append((name, accs.mean(0), accs.std(0), np.mean(secs)))
    print(f"\nMultiMNIST: {args.n_train} training / {args.n_test} test pairs, LeNet, "
          f"{args.epochs} epochs, Adam {args.lr:g}, batch {args.batch_size}, {args.seeds} seeds "
          "(mean +- std)")
    print(f"{'method':<24}{'left %':>16}{'right %':>16}{'fit s':>8}{'published (full MNIST)':>26}")
    for name, mean, std, sec in rows:
        pub = PUBLISHED.get(name)
        pub = f"{pub[0]:.2f} / {pub[1]:.2f}" if pub else ""
        print(f"{name:<24}{mean[0]:>9.2f} +- {std[0]:<4.2f}{mean[1]:>9.2f} +- {std[1]:<4.2f}"
              f"{sec:>8.0f}{pub:>26}")


def omniglot_tasks(n_tasks, seed):
    data = load_omniglot("background")
    rng = np.random.RandomState(seed)
    alphabets = rng.choice(len(data.group_names), size=n_tasks, replace=False)
    X_tr, y_tr, t_tr, X_te, y_te, t_te = [], [], [], [], [], []
    for task, a in enumerate(alphabets):
        chars = np.unique(data.target[data.groups == a])
        for label, c in enumerate(rng.choice(chars, size=5, replace=False)):
            idx = np.flatnonzero(data.target == c)
            idx = idx[np.argsort(data.drawers[idx])]
            for part, (X, y, t) in ((idx[:15], (X_tr, y_tr, t_tr)), (idx[15:], (X_te, y_te, t_te))):
                X.append(data.data[part])
                y.append(np.full(len(part), label))
                t.append(np.full(len(part), task))
    cat = np.concatenate
    return (cat(X_tr), cat(y_tr), cat(t_tr)), (cat(X_te), cat(y_te), cat(t_te))


def negative_transfer(args):
    from sktransfer.modules import Conv4

    def conv():
        return Conv4(hidden_channels=32)

    rows = []
    archs = {"independent": "independent", "hard": "hard",
             "conditioned (FiLM)": TaskConditioning(where="all", how="film"),
             "cross_stitch": "cross_stitch"}
    for name, arch in archs.items():
        accs, secs = [], []
        for seed in range(args.seeds):
            (X_tr, y_tr, t_tr), (X_te, y_te, t_te) = omniglot_tasks(args.n_tasks, seed)
            start = time.perf_counter()
            clf = MultiTaskClassifier(architecture=arch, module=conv, max_epochs=args.epochs_nt,
                                      lr=1e-3, batch_size=64, random_state=seed)
            clf.fit(X_tr, y_tr, task_ids=t_tr)
            secs.append(time.perf_counter() - start)
            pred = clf.predict(X_te, task_ids=t_te)
            accs.append(100 * np.mean([np.mean(pred[t_te == k] == y_te[t_te == k])
                                       for k in range(args.n_tasks)]))
            print(f"  {name:<20} seed {seed}: {accs[-1]:.2f} ({secs[-1]:.0f} s)", flush=True)
        rows.append((name, np.mean(accs), np.std(accs), np.mean(secs)))
    print(f"\nNegative transfer: {args.n_tasks} Omniglot 5-way tasks (one alphabet each), "
          f"15 training / 5 test drawings per character, {args.epochs_nt} epochs, "
          f"{args.seeds} seeds; mean per-task test accuracy")
    print(f"{'architecture':<22}{'accuracy %':>18}{'fit s':>8}")
    for arch, mean, std, sec in rows:
        print(f"{arch:<22}{mean:>10.2f} +- {std:<5.2f}{sec:>8.0f}")
    print("(every network uses Conv4 with 32 channels; chance is 20%)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=["multimnist", "negative", "all"], default="all")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epochs-nt", type=int, default=30)
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--n-tasks", type=int, default=20)
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.epochs_nt = 1, 1, 2
        args.n_train, args.n_test, args.n_tasks = 1000, 300, 4
    if not os.environ.get("SKTRANSFER_DATA"):
        print("set SKTRANSFER_DATA to the folder holding mnist/ and omniglot/")
    with torch_threads(1):
        if args.part in ("multimnist", "all"):
            multimnist(args)
        if args.part in ("negative", "all"):
            negative_transfer(args)


if __name__ == "__main__":
    main()
