"""early_stopping / validation_fraction / n_iter_no_change / tol, as in MLPClassifier."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from skorch.dataset import Dataset, ValidSplit
from torch import nn

from sktransfer import MultiTaskClassifier, MultiTaskRegressor
from sktransfer.base import _FastBatchIterator
from sktransfer.continual import (
    ContinualClassifier,
    EWCContinualClassifier,
    ProgressiveNetworkClassifier,
)
from sktransfer.meta import BaselineFewShotClassifier
from sktransfer.transfer import FineTuner, FineTunerRegressor


def _source():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32)[:600], y[:600]


STOPPING = dict(early_stopping=True, n_iter_no_change=2, tol=0.0, max_epochs=60, lr=0.05,
                random_state=0)

CASES = {
    "MultiTaskClassifier": (MultiTaskClassifier(hidden_layer_sizes=(32,), **STOPPING), "clf"),
    "MultiTaskRegressor": (MultiTaskRegressor(hidden_layer_sizes=(32,), **STOPPING), "reg"),
    "FineTuner": (FineTuner(_source, strategy="full", **STOPPING), "clf"),
    "FineTunerRegressor": (FineTunerRegressor(_source, strategy="full", **STOPPING), "reg"),
    "ContinualClassifier": (ContinualClassifier(hidden_layer_sizes=(32,), **STOPPING), "seq"),
    "EWCContinualClassifier": (EWCContinualClassifier(hidden_layer_sizes=(32,), **STOPPING),
                               "seq"),
    "ProgressiveNetworkClassifier": (ProgressiveNetworkClassifier(hidden_layer_sizes=(32,),
                                                                  **STOPPING), "seq"),
    "BaselineFewShotClassifier": (BaselineFewShotClassifier(hidden_layer_sizes=(32,),
                                                            **STOPPING), "clf"),
}


def _fit(estimator, kind, X, y):
    if kind == "reg":
        return estimator.fit(X, X[:, 20] + X[:, 30])
    if kind == "seq":
        return estimator.fit(X, y, task_ids=y // 5)
    return estimator.fit(X, y)


@pytest.mark.parametrize("name", sorted(CASES))
def test_training_stops_early_and_keeps_the_best_epoch(name, digits):
    estimator, kind = CASES[name]
    X, y = digits
    est = _fit(estimator, kind, X, y)
    history = est.net_.history
    n_tasks = 2 if kind == "seq" else 1
    assert len(history) < n_tasks * 60, "never stopped early"
    losses = history[:, "valid_loss"]
    assert np.all(np.isfinite(losses))
    stopper = dict(est.net_.callbacks_)["early_stopping"]
    best = stopper.best_model_weights_
    state = est.net_.module_.state_dict()
    assert all(torch.equal(state[k], v) for k, v in best.items()), "the best weights are not back"


def test_early_stopping_is_reproducible_and_off_by_default(digits):
    X, y = digits
    a = MultiTaskClassifier(hidden_layer_sizes=(16,), **STOPPING).fit(X, y)
    b = MultiTaskClassifier(hidden_layer_sizes=(16,), **STOPPING).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert len(a.net_.history) == len(b.net_.history)
    plain = MultiTaskClassifier(hidden_layer_sizes=(16,), max_epochs=3, random_state=0).fit(X, y)
    assert "valid_loss" not in plain.net_.history[-1]
    assert "early_stopping" not in dict(plain.net_.callbacks_)


def test_validation_fraction_and_a_given_split(digits):
    X, y = digits
    est = MultiTaskClassifier(hidden_layer_sizes=(16,), validation_fraction=0.25,
                              **STOPPING).fit(X, y)
    assert est.net_.train_split.cv == 0.25
    given = ValidSplit(0.5, random_state=0)
    est = MultiTaskClassifier(hidden_layer_sizes=(16,), train_split=given, **STOPPING).fit(X, y)
    assert est.net_.train_split is given


@pytest.mark.parametrize("bad", [{"validation_fraction": 1.0}, {"validation_fraction": 0.0},
                                 {"n_iter_no_change": 0}, {"tol": -1.0},
                                 {"early_stopping": "yes"}])
def test_bad_early_stopping_parameters(bad, digits):
    X, y = digits
    name = next(iter(bad))
    est = MultiTaskClassifier(**{**STOPPING, **bad})
    with pytest.raises(ValueError, match=f"The '{name}' parameter of MultiTaskClassifier"):
        est.fit(X, y)


def test_fast_iterator_slices_a_validation_subset():
    X = torch.arange(20, dtype=torch.float32).reshape(10, 2)
    y = torch.arange(10)
    subset = torch.utils.data.Subset(Dataset(X, y), [1, 3, 5])
    it = _FastBatchIterator(subset, batch_size=2)
    assert it._tensors is not None  # sliced, not collated sample by sample
    batches = list(it)
    np.testing.assert_array_equal(torch.cat([b[1] for b in batches]).numpy(), [1, 3, 5])
    assert len(it) == 2
