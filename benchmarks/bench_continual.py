"""Accuracy of the continual-learning methods on split and permuted MNIST.

Split MNIST (5 tasks of 2 digits) and permuted MNIST (``--n-tasks``
pixel permutations of the digits), each in the three scenarios of van de Ven
and Tolias (2019):

* task-incremental: a head per task, the task id given at test time;
* domain-incremental: one head, no task id (split MNIST: "first or second
  digit of the pair?"; permuted MNIST: the ten digits);
* class-incremental: one head over every class seen so far (split MNIST:
  the ten digits; permuted MNIST: 10 new classes per task).

Methods: naive fine-tuning (lower bound), joint training (upper bound), EWC,
online EWC, SI, MAS, LwF, experience replay, A-GEM, GEM, DER, DER++, ER-ACE,
GDumb, iCaRL and progressive networks (task-incremental only: they need the
task id). Every method with a memory gets the same ``--memory-size``
(GDumb trains on its memory alone, from scratch at every task, for the same
``--epochs``). ``--methods`` picks a subset. For each, the accuracy
matrix over ``--seeds`` seeds gives ACC (average accuracy after the last
task), BWT (backward transfer) and forgetting (see
:mod:`sktransfer.metrics`), as mean and standard deviation in percent.

Data: the MNIST test set (10,000 digits; ``SKTRANSFER_DATA``), split into a
training and a test part (``--n-test`` digits), since that is the copy
available offline; the full-MNIST numbers of the papers used 60,000
training digits and far more iterations, so absolute numbers are lower.

Published anchors (other protocols, so for orientation only): Avalanche's
reproduced baselines on split MNIST class-incremental (GDumb 0.97 with a
memory of 4,400 samples, replay-based methods), task-incremental SI 0.97,
permuted MNIST A-GEM 0.81 and EWC 0.83 (0.94 in the EWC paper). Those train
on the 60,000 MNIST training digits and test on the 10,000 test digits;
here both come out of the 10,000 test digits, with fewer samples per task
and fewer epochs.

Run ``python benchmarks/bench_continual.py`` (``--quick`` for a short run).
"""

import argparse
import json
import time

import numpy as np
import torch

from sktransfer.continual import (
    AGEM,
    DER,
    ERACE,
    EWC,
    GEM,
    MAS,
    ContinualClassifier,
    DERPlusPlus,
    GDumb,
    ICaRL,
    LwF,
    ProgressiveNetworkClassifier,
    Replay,
    SynapticIntelligence,
)
from sktransfer.datasets import load_mnist, make_permuted_tasks, make_split_tasks
from sktransfer.metrics import average_accuracy, backward_transfer, forgetting

PAIRS = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def methods(args):
    mem = args.memory_size
    return {
        "naive": "naive",
        "joint": "joint",
        "EWC": EWC(ewc_lambda=args.ewc_lambda),
        "online EWC": EWC(ewc_lambda=args.ewc_lambda, gamma=1.0),
        "SI": SynapticIntelligence(si_c=args.si_c),
        "MAS": MAS(mas_lambda=args.mas_lambda),
        "LwF": LwF(alpha=1.0, temperature=2.0),
        "replay": Replay(memory_size=mem),
        "A-GEM": AGEM(memory_size=mem),
        "GEM": GEM(memory_size=mem),
        "DER": DER(memory_size=mem),
        "DER++": DERPlusPlus(memory_size=mem),
        "ER-ACE": ERACE(memory_size=mem),
        "GDumb": GDumb(memory_size=mem),
        "iCaRL": ICaRL(memory_size=mem),
        "progressive": None,
    }


def split_mnist(X, y, scenario):
    Xs, ys, t = make_split_tasks(X, y, classes=PAIRS, relabel=scenario == "domain")
    return Xs, ys, t


def permuted_mnist(X, y, scenario, n_tasks, seed):
    Xs, ys, t = make_permuted_tasks(X, y, n_tasks=n_tasks, random_state=seed)
    if scenario == "class":
        ys = ys + 10 * t
    return Xs, ys, t


def run(bench, scenario, name, strategy, seed, data, args):
    Xtr, ytr, Xte, yte = data
    if bench == "split":
        Xa, ya, ta = split_mnist(Xtr, ytr, scenario)
        Xb, yb, tb = split_mnist(Xte, yte, scenario)
    else:
        Xa, ya, ta = permuted_mnist(Xtr, ytr, scenario, args.n_tasks, 1000 + seed)
        Xb, yb, tb = permuted_mnist(Xte, yte, scenario, args.n_tasks, 1000 + seed)
    n_tasks = len(np.unique(ta))
    ev = [(Xb[tb == k], yb[tb == k]) for k in range(n_tasks)]
    common = dict(hidden_layer_sizes=tuple(args.hidden), max_epochs=args.epochs,
                  batch_size=args.batch_size, lr=args.lr, random_state=seed)
    if strategy is None:
        clf = ProgressiveNetworkClassifier(**common)
    else:
        clf = ContinualClassifier(strategy=strategy, scenario=scenario, **common)
    t0 = time.perf_counter()
    clf.fit(Xa, ya, task_ids=ta, eval_tasks=ev)
    R = clf.accuracy_matrix_
    return dict(acc=average_accuracy(R), bwt=backward_transfer(R), forgetting=forgetting(R),
                time=time.perf_counter() - t0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=8000,
                        help="training digits (split MNIST uses them all; permuted MNIST "
                        "permutes --n-train-permuted of them per task)")
    parser.add_argument("--n-train-permuted", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--n-tasks", type=int, default=10, help="permuted MNIST tasks")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per task")
    parser.add_argument("--hidden", type=int, nargs="+", default=[400, 400])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ewc-lambda", type=float, default=100.0)
    parser.add_argument("--si-c", type=float, default=1.0)
    parser.add_argument("--mas-lambda", type=float, default=1.0)
    parser.add_argument("--memory-size", type=int, default=1000)
    parser.add_argument("--benchmarks", nargs="+", default=["split", "permuted"])
    parser.add_argument("--scenarios", nargs="+", default=["task", "domain", "class"])
    parser.add_argument("--methods", nargs="+", default=None,
                        help="run only these methods (names as printed)")
    parser.add_argument("--output", help="write the results as JSON to this file")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.n_train, args.n_train_permuted, args.n_test = 1, 2000, 500, 1000
        args.n_tasks, args.epochs, args.hidden = 5, 3, [100]
    torch.set_num_threads(1)
    d = load_mnist("test", flatten=True)
    rng = np.random.RandomState(0)
    order = rng.permutation(len(d.target))
    test, train = order[:args.n_test], order[args.n_test:args.n_test + args.n_train]
    X, y = d.data.astype(np.float32), d.target
    permuted = (f" (permuted MNIST: {args.n_train_permuted} training digits per task, "
                f"{args.n_tasks} tasks)" if "permuted" in args.benchmarks else "")
    print(f"MNIST test set: {len(train)} training / {len(test)} test digits{permuted}; "
          f"MLP {args.hidden}, {args.epochs} epochs per task, "
          f"batch {args.batch_size}, Adam lr {args.lr}, {args.seeds} seed(s); "
          f"EWC lambda {args.ewc_lambda}, SI c {args.si_c}, MAS lambda {args.mas_lambda}, "
          f"memory {args.memory_size}")
    results = {}
    for bench in args.benchmarks:
        tr = train if bench == "split" else train[:args.n_train_permuted]
        data = (X[tr], y[tr], X[test], y[test])
        for scenario in args.scenarios:
            print(f"\n{bench} MNIST, {scenario}-incremental")
            print(f"{'method':<12} {'ACC %':>14} {'BWT %':>14} {'forgetting %':>14} "
                  f"{'time/run':>9}")
            for name, strategy in methods(args).items():
                if strategy is None and scenario != "task":
                    continue
                if args.methods is not None and name not in args.methods:
                    continue
                runs = [run(bench, scenario, name, strategy, seed, data, args)
                        for seed in range(args.seeds)]
                row = {k: (float(np.mean([r[k] for r in runs])),
                           float(np.std([r[k] for r in runs]))) for k in runs[0]}
                results[f"{bench}/{scenario}/{name}"] = row
                print(f"{name:<12} "
                      + " ".join(f"{100 * row[k][0]:>7.2f} ± {100 * row[k][1]:>4.2f}"
                                 for k in ("acc", "bwt", "forgetting"))
                      + f" {row['time'][0]:>8.1f}s", flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
