"""What ``sample_weight`` and ``class_weight`` cost and what ``"balanced"`` buys.

Two tables, one process, one torch thread:

1. Time of a whole ``fit`` with random per-row weights against the same fit
   without weights (the weighted loss and the weights carried in every batch),
   per estimator, on digits; the fits alternate and the fastest of
   ``--repeats`` is kept for each (noise only ever adds time).
2. Class imbalance: digits 1 and 7 with 150 training rows each and digit 8
   with 8; the recall of the rare class and the balanced accuracy on the
   held-out rows of the three digits, without class weights and with
   ``class_weight="balanced"``.

Run ``python benchmarks/bench_sample_weight.py`` (``--quick``: fewer repeats).
"""

import argparse
import time

import numpy as np
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import balanced_accuracy_score, recall_score
from torch import nn

from sktransfer import MultiTaskClassifier
from sktransfer.base import torch_threads
from sktransfer.continual import ContinualClassifier
from sktransfer.meta import BaselineFewShotClassifier
from sktransfer.transfer import FineTuner


def _source():
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def estimators():
    common = dict(max_epochs=10, random_state=0)
    return {
        "MultiTaskClassifier": MultiTaskClassifier(hidden_layer_sizes=(64,), **common),
        "FineTuner (full)": FineTuner(_source, strategy="full", **common),
        "FineTuner (lp_ft)": FineTuner(_source, strategy="lp_ft", **common),
        "ContinualClassifier (replay)": ContinualClassifier(
            strategy="replay", hidden_layer_sizes=(64,), **common),
        "BaselineFewShotClassifier": BaselineFewShotClassifier(hidden_layer_sizes=(64,),
                                                               **common),
    }


def _fit_seconds(est, X, y, **fit_params):
    start = time.perf_counter()
    clone(est).fit(X, y, **fit_params)
    return time.perf_counter() - start


def timing_table(X, y, repeats):
    sw = np.random.RandomState(0).uniform(0.5, 2.0, len(X))
    print(f"\n1. whole fit on {len(X)} digits rows, 10 epochs: weighted vs unweighted "
          f"(fastest of {repeats})")
    print(f"{'estimator':<30} {'no weights (s)':>15} {'sample_weight (s)':>18} {'ratio':>7}")
    for name, est in estimators().items():
        plain, weighted = [], []
        for _ in range(repeats):
            plain.append(_fit_seconds(est, X, y))
            weighted.append(_fit_seconds(est, X, y, sample_weight=sw))
        a, b = min(plain), min(weighted)
        print(f"{name:<30} {a:>15.3f} {b:>18.3f} {b / a:>7.2f}")


def imbalance_table(X, y):
    rows = np.concatenate([np.flatnonzero(y == 1)[:150], np.flatnonzero(y == 7)[:150],
                           np.flatnonzero(y == 8)[:8]])
    test = np.setdiff1d(np.flatnonzero(np.isin(y, [1, 7, 8])), rows)
    print(f"\n2. imbalance: {len(rows)} training rows (digit 8: 8 of them), {len(test)} "
          "test rows")
    print(f"{'estimator':<30} {'recall(8) none':>15} {'balanced':>9} "
          f"{'bal. acc none':>14} {'balanced':>9}")
    for name, est in estimators().items():
        est = clone(est).set_params(max_epochs=25)
        scores = []
        for cw in (None, "balanced"):
            model = clone(est).set_params(class_weight=cw).fit(X[rows], y[rows])
            pred = model.predict(X[test])
            scores.append((recall_score(y[test], pred, labels=[8], average="macro"),
                           balanced_accuracy_score(y[test], pred)))
        (r0, b0), (r1, b1) = scores
        print(f"{name:<30} {r0:>15.3f} {r1:>9.3f} {b0:>14.3f} {b1:>9.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    with torch_threads(1):
        timing_table(X, y, repeats)
        imbalance_table(X, y)


if __name__ == "__main__":
    main()
