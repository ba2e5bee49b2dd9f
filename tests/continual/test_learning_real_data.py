"""Continual learning on real data: the methods resist forgetting as published."""

import os

import numpy as np
import pytest
from sklearn.datasets import load_digits

from sktransfer.continual import EWC, ContinualClassifier, ProgressiveNetworkClassifier
from sktransfer.datasets import make_permuted_tasks, make_split_tasks
from sktransfer.metrics import average_accuracy, forgetting


def _mnist():
    root = os.environ.get("SKTRANSFER_DATA")
    if not root or not os.path.isdir(os.path.join(root, "mnist")):
        pytest.skip("needs the MNIST files: set SKTRANSFER_DATA to a folder with mnist/")
    from sktransfer.datasets import load_mnist

    d = load_mnist("test", flatten=True)
    return d.data.astype(np.float32), d.target


@pytest.fixture(scope="module")
def split_digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    rng = np.random.RandomState(0)
    idx = rng.permutation(len(y))
    tr, te = idx[:1300], idx[1300:]
    pairs = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    train = make_split_tasks(X[tr], y[tr], classes=pairs)
    Xe, ye, te_ = make_split_tasks(X[te], y[te], classes=pairs)
    return train, [(Xe[te_ == k], ye[te_ == k]) for k in range(5)]


def _acc_matrix(strategy, data, scenario="class", **kw):
    (X, y, t), ev = data
    params = dict(hidden_layer_sizes=(100,), max_epochs=10, lr=0.003, batch_size=32,
                  random_state=0)
    params.update(kw)
    clf = ContinualClassifier(strategy=strategy, scenario=scenario, **params)
    return clf.fit(X, y, task_ids=t, eval_tasks=ev).accuracy_matrix_


def test_class_incremental_split_digits_replay_beats_regularisers(split_digits):
    acc = {s: average_accuracy(_acc_matrix(s, split_digits))
           for s in ["naive", "ewc", "si", "lwf", "replay", "joint"]}
    # the published pattern: regularisers forget everything but the last task
    for s in ["naive", "ewc", "si"]:
        assert 0.12 < acc[s] < 0.3, (s, acc)
    assert acc["lwf"] < 0.4
    assert acc["replay"] > max(acc["ewc"], acc["si"], acc["lwf"]) + 0.4, acc
    assert acc["joint"] > 0.85


def test_task_incremental_is_easy_and_progressive_nets_do_not_forget(split_digits):
    R = _acc_matrix("naive", split_digits, scenario="task")
    assert average_accuracy(R) > 0.9
    (X, y, t), ev = split_digits
    pnn = ProgressiveNetworkClassifier(hidden_layer_sizes=(32,), max_epochs=5, lr=0.01,
                                       random_state=0)
    R = pnn.fit(X, y, task_ids=t, eval_tasks=ev).accuracy_matrix_
    assert forgetting(R) == 0 and average_accuracy(R) > 0.95


def test_ewc_beats_naive_on_permuted_mnist_over_seeds():
    X, y = _mnist()
    margins = []
    for seed in range(3):
        idx = np.random.RandomState(seed).permutation(len(y))
        tr, te = idx[:300], idx[8000:9000]
        Xa, ya, ta = make_permuted_tasks(X[tr], y[tr], n_tasks=4, random_state=seed)
        Xb, yb, tb = make_permuted_tasks(X[te], y[te], n_tasks=4, random_state=seed)
        ev = [(Xb[tb == k], yb[tb == k]) for k in range(4)]
        acc = {}
        for name, strategy in [("naive", "naive"), ("ewc", EWC(ewc_lambda=100.0))]:
            clf = ContinualClassifier(strategy=strategy, scenario="domain", max_epochs=20,
                                      hidden_layer_sizes=(128,), batch_size=32,
                                      random_state=seed)
            acc[name] = average_accuracy(clf.fit(Xa, ya, task_ids=ta,
                                                 eval_tasks=ev).accuracy_matrix_)
        margins.append(acc["ewc"] - acc["naive"])
    assert min(margins) > 0.015, margins
    assert np.mean(margins) > 0.025, margins
