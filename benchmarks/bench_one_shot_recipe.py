"""The few-shot recipe for images on a CPU budget, on Lake-style one-shot runs.

PrototypicalClassifier is meta-trained with the recipe of the user guide
("A recipe for images on a CPU budget"): 20-way 1-shot episodes (5 queries
per class) drawn within one alphabet (``groups=``), on 20 of the 30 Omniglot
"background" alphabets with each image rotated by 90, 180 and 270 degrees as
new classes (:func:`~sktransfer.datasets.augment_rotations`), a StepLR
learning-rate schedule (skorch's ``LRScheduler``) and a wall-clock budget
(:class:`~sktransfer.callbacks.TimeBudget`). The other 10 alphabets are held
out; 20-way one-shot runs in Lake et al.'s layout
(:func:`~sktransfer.datasets.make_one_shot_runs`, one drawing of each
character as the support set and another drawer's as the test image) are
built from them and scored by :func:`~sktransfer.metrics.score_one_shot_runs`,
with and without test-time shift averaging (``tta="shift"``) of the one
trained model.

``--n-way``, ``--k-shot``, ``--n-query``, ``--lr``, ``--step-size``, ``--augment`` and
``--no-groups`` change the training episodes, to compare recipes at the same budget
(``--augment none`` trains without the random shifts of the recipe's ``augment="shift"``).

Run ``SKTRANSFER_DATA=... python benchmarks/bench_one_shot_recipe.py``
(``--minutes`` sets the training budget, default 5; ``--quick`` is 1 minute).
"""

import argparse
import time

import numpy as np
import torch
from skorch.callbacks import LRScheduler

from sktransfer.callbacks import TimeBudget
from sktransfer.datasets import augment_rotations, load_omniglot, make_one_shot_runs
from sktransfer.meta import PrototypicalClassifier
from sktransfer.metrics import score_one_shot_runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="a 1-minute budget")
    parser.add_argument("--runs", type=int, default=60, help="one-shot runs to score")
    parser.add_argument("--n-way", type=int, default=20, help="ways per training episode")
    parser.add_argument("--k-shot", type=int, default=1, help="shots per training episode")
    parser.add_argument("--n-query", type=int, default=5, help="queries per class")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--step-size", type=int, default=10,
                        help="halve the rate every this many epochs of 100 episodes; 0: never")
    parser.add_argument("--augment", choices=("shift", "none"), default="shift",
                        help="training-time augmentation of the episodes (default shift)")
    parser.add_argument("--no-groups", action="store_true",
                        help="draw the episodes across alphabets")
    args = parser.parse_args()
    minutes = 1.0 if args.quick else args.minutes

    data = load_omniglot("background")
    alphabets = np.unique(data.groups)
    test = ~np.isin(data.groups, alphabets[:20])
    X_train, y_train, g_train = augment_rotations(data.data[~test], data.target[~test],
                                                  data.groups[~test])
    runs = make_one_shot_runs(data.data[test], data.target[test], data.groups[test],
                              drawers=data.drawers[test], n_runs=args.runs, n_way=20,
                              random_state=0)
    print(f"training: {len(np.unique(y_train))} classes (20 "
          f"alphabets x 4 rotations), {len(y_train)} images; {len(runs)} 20-way one-shot "
          f"runs from {len(alphabets) - 20} held-out alphabets; torch threads: "
          f"{torch.get_num_threads()}")

    budget = TimeBudget(minutes=minutes)
    callbacks = [budget]
    if args.step_size:
        callbacks.append(LRScheduler(policy=torch.optim.lr_scheduler.StepLR,
                                     step_size=args.step_size, gamma=0.5))
    proto = PrototypicalClassifier(n_way=args.n_way, k_shot=args.k_shot, n_query=args.n_query,
                                   lr=args.lr, episodes_per_epoch=100, max_epochs=10_000,
                                   augment=None if args.augment == "none" else args.augment,
                                   callbacks=callbacks, random_state=0)
    proto.fit(X_train, y_train, groups=None if args.no_groups else g_train)
    print(f"episodes {args.n_way}-way {args.k_shot}-shot, {args.n_query} queries per class, "
          f"lr {args.lr:g}, augment {args.augment}, within one alphabet: {not args.no_groups}")
    history = proto.net_.history
    print(f"trained {budget.elapsed_:.0f} s: {budget.n_batches_} episodes, "
          f"{len(history)} epochs (stopped by the budget: {budget.stopped_}), "
          f"final train_loss {history[-1, 'train_loss']:.3f}")
    durations = [row["dur"] / 100 for row in history if "dur" in row]
    if len(durations) >= 10:
        print(f"seconds per episode: first 5 epochs {np.mean(durations[:5]):.3f}, "
              f"last 5 {np.mean(durations[-5:]):.3f}")

    print(f"\n{'tta':<8} {'error %':>8} {'std %':>7} {'score s':>8}")
    for tta in (None, "shift"):
        proto.set_params(tta=tta)
        start = time.perf_counter()
        result = score_one_shot_runs(proto, runs)
        seconds = time.perf_counter() - start
        print(f"{str(tta):<8} {100 * result['mean_error']:8.2f} "
              f"{100 * result['std_error']:7.2f} {seconds:8.1f}")


if __name__ == "__main__":
    main()
