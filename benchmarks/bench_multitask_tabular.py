"""Two binary tasks on one tabular data set: architectures and weightings, AUC per task.

The common tabular multi-task benchmark is UCI Census-Income (KDD), with
the tasks "income > 50K" and "never married" (reported for MMoE by
PaddleRec: AUC 0.9447 / 0.9932). It needs a download that this benchmark
does not do; the same setting (two binary tasks on one table, with
correlated but different targets) is built from a data set that ships with
scikit-learn, the Wisconsin breast cancer data (569 rows, 30 features):

* task ``malignant``: the diagnosis;
* task ``large``: the worst tumour area above its median, with the nine
  size features (radius, perimeter and area: mean, standard error and
  worst) removed from the inputs, so that it must be inferred from the
  shape and texture features; it correlates with the diagnosis (phi about
  0.7) without being the same question.

Every model is a :class:`~sktransfer.multitask.MultiTaskClassifier` on the
standardised 21 remaining features, trained on a stratified 70% of the rows
and scored on the other 30% (ROC AUC per task), for 3 seeds (the seed
draws the split and the network). Single-task learning is
``architecture="independent"`` (one network per task, nothing shared).

Run ``python benchmarks/bench_multitask_tabular.py`` (``--quick``: one
seed, fewer epochs).
"""

import argparse
import time

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sktransfer.base import torch_threads
from sktransfer.multitask import CGC, PLE, MMoE, MultiTaskClassifier

SIZE_WORDS = ("radius", "perimeter", "area")

CONFIGS = [
    ("single-task (independent)", dict(architecture="independent")),
    ("hard sharing", dict(architecture="hard")),
    ("MMoE (4 experts)", dict(architecture=MMoE(n_experts=4))),
    ("CGC (2 shared + 1 per task)", dict(architecture=CGC())),
    ("PLE (2 levels)", dict(architecture=PLE())),
    ("hard + uncertainty", dict(architecture="hard", weighting="uncertainty")),
    ("hard + famo", dict(architecture="hard", weighting="famo")),
    ("hard + pcgrad", dict(architecture="hard", weighting="pcgrad")),
    ("hard + nash_mtl", dict(architecture="hard", weighting="nash_mtl")),
    ("hard + fairgrad", dict(architecture="hard", weighting="fairgrad")),
    ("hard + db_mtl", dict(architecture="hard", weighting="db_mtl")),
    ("hard + gradvac", dict(architecture="hard", weighting="gradvac")),
    ("PLE + db_mtl", dict(architecture=PLE(), weighting="db_mtl")),
]


def make_problem():
    data = load_breast_cancer()
    names = list(data.feature_names)
    X, malignant = data.data, (data.target == 0).astype(int)
    worst_area = X[:, names.index("worst area")]
    large = (worst_area > np.median(worst_area)).astype(int)
    keep = [i for i, n in enumerate(names) if not any(w in n for w in SIZE_WORDS)]
    return X[:, keep], np.column_stack([malignant, large]), [names[i] for i in keep]


def run(config, X, Y, seed, epochs):
    strat = Y[:, 0] * 2 + Y[:, 1]
    X_tr, X_te, Y_tr, Y_te = train_test_split(X, Y, test_size=0.3, stratify=strat,
                                              random_state=seed)
    scaler = StandardScaler().fit(X_tr)
    clf = MultiTaskClassifier(hidden_layer_sizes=(32,), lr=1e-3, batch_size=32,
                              max_epochs=epochs, random_state=seed, **config)
    t0 = time.perf_counter()
    clf.fit(scaler.transform(X_tr).astype(np.float32), Y_tr)
    seconds = time.perf_counter() - t0
    proba = clf.predict_proba(scaler.transform(X_te).astype(np.float32))
    aucs = [roc_auc_score(Y_te[:, t], proba[t][:, 1]) for t in range(2)]
    return aucs, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, fewer epochs")
    args = parser.parse_args()
    seeds = [0] if args.quick else [0, 1, 2]
    epochs = 20 if args.quick else 40
    X, Y, _ = make_problem()
    phi = np.corrcoef(Y[:, 0], Y[:, 1])[0, 1]
    print(f"breast cancer: {X.shape[0]} rows, {X.shape[1]} features; tasks malignant "
          f"({Y[:, 0].mean():.2f} positive) and large ({Y[:, 1].mean():.2f}), phi = {phi:.2f}")
    print(f"{len(seeds)} seeds, {epochs} epochs, MLP trunk (32,), Adam lr 1e-3, batch 32, "
          "test AUC mean +- std over seeds")
    print(f"{'model':30s}{'AUC malignant':>18s}{'AUC large':>18s}{'fit s':>8s}")
    with torch_threads(1):
        for name, config in CONFIGS:
            res = [run(config, X, Y, seed, epochs) for seed in seeds]
            auc = np.array([r[0] for r in res])
            secs = np.mean([r[1] for r in res])
            m, s = auc.mean(0), auc.std(0)
            print(f"{name:30s}{m[0]:11.4f} +- {s[0]:.4f}{m[1]:11.4f} +- {s[1]:.4f}{secs:8.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
