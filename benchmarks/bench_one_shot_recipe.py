"""The few-shot recipe for images on a CPU budget, on Lake-style one-shot runs.

PrototypicalClassifier is meta-trained with the recipe of the user guide
("A recipe for images on a CPU budget"): 20-way 5-shot episodes drawn
within one alphabet (``groups=``), Omniglot "background" with each image
rotated by 90, 180 and 270 degrees as new classes
(:func:`~sktransfer.datasets.augment_rotations`), a StepLR learning-rate
schedule (skorch's ``LRScheduler``) and a wall-clock budget
(:class:`~sktransfer.callbacks.TimeBudget`). Five of the 30 background
alphabets are held out; 20-way one-shot runs in Lake et al.'s layout
(:func:`~sktransfer.datasets.make_one_shot_runs`, one drawing of each
character as the support set and another drawer's as the test image) are
built from them and scored by :func:`~sktransfer.metrics.score_one_shot_runs`,
with and without test-time shift averaging (``tta="shift"``) of the one
trained model.

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
    parser.add_argument("--runs", type=int, default=40, help="one-shot runs to score")
    parser.add_argument("--held-out", type=int, default=5, help="alphabets held out")
    args = parser.parse_args()
    minutes = 1.0 if args.quick else args.minutes

    data = load_omniglot("background")
    rng = np.random.RandomState(0)
    alphabets = np.unique(data.groups)
    held_out = rng.choice(alphabets, args.held_out, replace=False)
    test = np.isin(data.groups, held_out)
    X_train, y_train, g_train = augment_rotations(data.data[~test], data.target[~test],
                                                  data.groups[~test])
    runs = make_one_shot_runs(data.data[test], data.target[test], data.groups[test],
                              drawers=data.drawers[test], n_runs=args.runs, n_way=20,
                              random_state=0)
    print(f"training: {len(np.unique(y_train))} classes ({len(alphabets) - len(held_out)} "
          f"alphabets x 4 rotations), {len(y_train)} images; {len(runs)} 20-way one-shot "
          f"runs from {len(held_out)} held-out alphabets; torch threads: "
          f"{torch.get_num_threads()}")

    budget = TimeBudget(minutes=minutes)
    schedule = LRScheduler(policy=torch.optim.lr_scheduler.StepLR, step_size=10, gamma=0.5)
    proto = PrototypicalClassifier(n_way=20, k_shot=5, n_query=5, episodes_per_epoch=100,
                                   max_epochs=10_000, callbacks=[schedule, budget],
                                   random_state=0)
    proto.fit(X_train, y_train, groups=g_train)
    history = proto.net_.history
    print(f"trained {budget.elapsed_:.0f} s: {budget.n_batches_} episodes, "
          f"{len(history)} epochs (stopped by the budget: {budget.stopped_}), "
          f"final train_loss {history[-1, 'train_loss']:.3f}")

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
