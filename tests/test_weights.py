"""sample_weight in fit / partial_fit and class_weight, in every supervised estimator.

The loss of a batch is the weighted mean of its rows' losses (as in
``MLPClassifier``), so with one full batch an integer weight k is k copies of
the row, a weight of 0 removes it, and uniform weights are no weights.
"""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import recall_score
from torch import nn

from sktransfer import MultiTaskClassifier, MultiTaskRegressor
from sktransfer._weights import check_sample_weight, class_weight_table
from sktransfer.continual import (
    ContinualClassifier,
    EWCContinualClassifier,
    ProgressiveNetworkClassifier,
    ReservoirBuffer,
)
from sktransfer.meta import BaselineFewShotClassifier
from sktransfer.transfer import FineTuner, FineTunerRegressor


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32)[:400], y[:400]


def _source():
    return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 4))


_FULL_BATCH = dict(batch_size=-1, random_state=0)
CLASSIFIERS = {
    "multitask": MultiTaskClassifier(hidden_layer_sizes=(16,), max_epochs=15, lr=0.02,
                                     **_FULL_BATCH),
    "finetuner": FineTuner(_source, strategy="full", lr=0.02, max_epochs=15, **_FULL_BATCH),
    "continual": ContinualClassifier(strategy="joint", hidden_layer_sizes=(16,),
                                     max_epochs=15, lr=0.02, **_FULL_BATCH),
    "ewc": EWCContinualClassifier(hidden_layer_sizes=(16,), max_epochs=15, lr=0.02,
                                  **_FULL_BATCH),
    "progressive": ProgressiveNetworkClassifier(hidden_layer_sizes=(16,), max_epochs=15,
                                                lr=0.02, **_FULL_BATCH),
    "baseline": BaselineFewShotClassifier(hidden_layer_sizes=(16,), max_epochs=15, lr=0.02,
                                          **_FULL_BATCH),
}
REGRESSORS = {
    "multitask": MultiTaskRegressor(hidden_layer_sizes=(16,), max_epochs=15, lr=0.02,
                                    **_FULL_BATCH),
    "finetuner": FineTunerRegressor(_source, strategy="full", lr=0.02, max_epochs=15,
                                    **_FULL_BATCH),
}


def _output(est, X):
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)


def _cases():
    yield from (pytest.param(est, False, id=f"classifier-{k}") for k, est in CLASSIFIERS.items())
    yield from (pytest.param(est, True, id=f"regressor-{k}") for k, est in REGRESSORS.items())


def _target(digits, regression):
    X, y = digits
    return (X[:, 20] + X[:, 43]).astype(np.float32) if regression else y


@pytest.mark.parametrize("est, regression", list(_cases()))
def test_uniform_weights_are_no_weights(digits, est, regression):
    X, y = digits[0], _target(digits, regression)
    plain = clone(est).fit(X, y)
    ones = clone(est).fit(X, y, sample_weight=np.full(len(X), 3.0))
    np.testing.assert_array_equal(_output(plain, X), _output(ones, X))


@pytest.mark.parametrize("est, regression", list(_cases()))
def test_integer_weights_are_repeated_rows(digits, est, regression):
    X, y = digits[0], _target(digits, regression)
    sw = np.random.RandomState(0).randint(0, 4, len(X))
    weighted = clone(est).fit(X, y, sample_weight=sw)
    repeated = clone(est).fit(X.repeat(sw, axis=0), y.repeat(sw))
    plain = clone(est).fit(X, y)
    np.testing.assert_allclose(_output(weighted, X), _output(repeated, X), atol=1e-4)
    # ... and they change the model
    assert np.abs(_output(weighted, X) - _output(plain, X)).max() > 1e-2


@pytest.mark.parametrize("est", CLASSIFIERS.values(), ids=CLASSIFIERS.keys())
def test_class_weight_dict_moves_predictions(digits, est):
    X, y = digits
    heavy = {0: 1000.0, **{k: 1e-4 for k in range(1, 10)}}
    plain = clone(est).fit(X, y)
    weighted = clone(est).set_params(class_weight=heavy).fit(X, y)
    assert (plain.predict(X) == 0).mean() < 0.2
    assert (weighted.predict(X) == 0).mean() > 0.9


@pytest.mark.parametrize("est", CLASSIFIERS.values(), ids=CLASSIFIERS.keys())
def test_balanced_class_weight_raises_minority_recall(digits, est):
    # 3 classes, one of them 20 times rarer than the others
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    rows = np.concatenate([np.flatnonzero(y == 1)[:150], np.flatnonzero(y == 7)[:150],
                           np.flatnonzero(y == 8)[:8]])
    Xi, yi = X[rows], y[rows]
    test = np.setdiff1d(np.flatnonzero(np.isin(y, [1, 7, 8])), rows)
    est = clone(est).set_params(max_epochs=25)
    plain = clone(est).fit(Xi, yi)
    balanced = clone(est).set_params(class_weight="balanced").fit(Xi, yi)
    recall = [recall_score(y[test], m.predict(X[test]), labels=[8], average="macro")
              for m in (plain, balanced)]
    assert recall[1] > recall[0] + 0.2, recall


def test_balanced_equals_its_dict(digits):
    X, y = digits
    classes, counts = np.unique(y, return_counts=True)
    weights = len(y) / (len(classes) * counts)
    est = CLASSIFIERS["finetuner"]
    a = clone(est).set_params(class_weight="balanced").fit(X, y)
    b = clone(est).set_params(class_weight=dict(zip(classes.tolist(), weights))).fit(X, y)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-6)


def test_class_weight_times_sample_weight(digits):
    X, y = digits
    cw = {k: float(k + 1) for k in range(10)}
    sw = np.random.RandomState(1).rand(len(X)) + 0.1
    est = CLASSIFIERS["multitask"]
    both = clone(est).set_params(class_weight=cw).fit(X, y, sample_weight=sw)
    product = clone(est).fit(X, y, sample_weight=sw * np.array([cw[k] for k in y]))
    np.testing.assert_allclose(both.predict_proba(X), product.predict_proba(X), atol=1e-6)


# ------------------------------------------------------------- partial_fit
@pytest.mark.parametrize("est", [CLASSIFIERS["multitask"], CLASSIFIERS["finetuner"],
                                 CLASSIFIERS["ewc"]], ids=["multitask", "finetuner", "ewc"])
def test_partial_fit_weights(digits, est):
    X, y = digits
    sw = np.random.RandomState(0).randint(0, 4, len(X))
    classes = np.arange(10)
    weighted = clone(est).partial_fit(X, y, classes=classes, sample_weight=sw)
    repeated = clone(est).partial_fit(X.repeat(sw, axis=0), y.repeat(sw), classes=classes)
    np.testing.assert_allclose(_output(weighted, X), _output(repeated, X), atol=1e-4)
    with pytest.raises(ValueError, match="partial_fit.*compute_class_weight"):
        clone(est).set_params(class_weight="balanced").partial_fit(X, y, classes=classes)
    # a dict works, and a bad weight in a later call leaves the model as it was
    model = clone(est).set_params(class_weight={0: 2.0}).partial_fit(X, y, classes=classes)
    before = _output(model, X)
    with pytest.raises(ValueError, match="negative"):
        model.partial_fit(X, y, sample_weight=-np.ones(len(X)))
    np.testing.assert_array_equal(_output(model, X), before)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("est, regression", list(_cases()))
def test_bad_sample_weight(digits, est, regression):
    X, y = digits[0], _target(digits, regression)
    n = len(X)
    for weights, message in [(np.ones(n - 1), "399 entries but X has 400"),
                             (-np.ones(n), "negative"),
                             (np.zeros(n), "at least one non-zero"),
                             (np.ones((n, 2)), "1-D"),
                             (np.full(n, np.nan), "NaN")]:
        with pytest.raises(ValueError, match=message):
            clone(est).fit(X, y, sample_weight=weights)


def test_bad_class_weight(digits):
    X, y = digits
    est = CLASSIFIERS["finetuner"]
    with pytest.raises(ValueError, match=r"labels \[42\] that are not classes"):
        clone(est).set_params(class_weight={42: 2.0}).fit(X, y)
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        clone(est).set_params(class_weight={1: -2.0}).fit(X, y)
    with pytest.raises(ValueError, match="class_weight"):
        clone(est).set_params(class_weight="uniform").fit(X, y)
    with pytest.raises(ValueError, match="every row has weight zero"):
        clone(est).set_params(class_weight=dict.fromkeys(range(10), 0.0)).fit(X, y)


# --------------------------------------------------------------- multi-task
def test_multitask_class_weight_per_task(digits):
    X, y = digits
    Y = np.column_stack([y, y % 2])
    est = clone(CLASSIFIERS["multitask"])
    heavy = {0: 1000.0, **{k: 1e-4 for k in range(1, 10)}}
    model = est.set_params(class_weight={0: heavy}).fit(X, Y)
    pred = model.predict(X)
    assert (pred[:, 0] == 0).mean() > 0.9
    assert (pred[:, 1] == Y[:, 1]).mean() > 0.75  # the other task is unweighted
    as_list = clone(est).set_params(class_weight=[heavy, None]).fit(X, Y)
    np.testing.assert_array_equal(as_list.predict(X), pred)
    # task format: per task too
    t = np.arange(len(y)) % 2
    model = clone(est).set_params(class_weight={1: "balanced"}).fit(X, y, task_ids=t)
    assert model.score(X, y, task_ids=t) > 0.7


def test_multitask_class_weight_errors(digits):
    X, y = digits
    Y = np.column_stack([y, y % 2])
    est = clone(CLASSIFIERS["multitask"])
    with pytest.raises(ValueError, match="2 classification tasks: give one per task"):
        clone(est).set_params(class_weight={0: 2.0, 1: 3.0}).fit(X, Y)
    with pytest.raises(ValueError, match="list of 3 entries, but the model has 2 tasks"):
        clone(est).set_params(class_weight=[None, None, None]).fit(X, Y)
    with pytest.raises(ValueError, match=r"names tasks \['z'\]"):
        clone(est).set_params(class_weight={"z": "balanced"}).fit(X, Y)
    mixed = clone(est).set_params(task_types=["classification", "regression"],
                                  class_weight={1: "balanced"})
    with pytest.raises(ValueError, match="regression task"):
        mixed.fit(X, np.column_stack([y, X[:, 20]]))


def test_multitask_weights_with_missing_labels_and_gradient_weighting(digits):
    X, y = digits
    Y = np.column_stack([y, y % 2]).astype(float)
    Y[::3, 0] = np.nan
    sw = np.random.RandomState(0).randint(0, 4, len(X))
    est = clone(CLASSIFIERS["multitask"]).set_params(weighting="pcgrad", max_epochs=5)
    weighted = clone(est).fit(X, Y, sample_weight=sw)
    repeated = clone(est).fit(X.repeat(sw, axis=0), Y.repeat(sw, axis=0))
    for a, b in zip(weighted.predict_proba(X), repeated.predict_proba(X)):
        np.testing.assert_allclose(a, b, atol=1e-4)
    # the per-task losses in the history are weighted means too
    np.testing.assert_allclose(weighted.net_.history[:, "train_task_losses"],
                               repeated.net_.history[:, "train_task_losses"], rtol=1e-4)


def test_multitask_weights_in_a_search_with_routing(digits):
    import sklearn
    from sklearn.model_selection import GridSearchCV, KFold

    X, y = digits
    sw = np.random.RandomState(0).rand(len(X))
    sklearn.set_config(enable_metadata_routing=True)
    est = clone(CLASSIFIERS["multitask"]).set_params(max_epochs=5)
    est.set_fit_request(sample_weight=True).set_score_request(sample_weight=True)
    search = GridSearchCV(est, {"lr": [0.01, 0.02]}, cv=KFold(2))
    search.fit(X, y, sample_weight=sw)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


# --------------------------------------------------------------- continual
def test_replay_memory_keeps_weights(digits):
    X, y = digits
    Xs, ys = X[:200], y[:200]
    t = (ys >= 5).astype(int)
    sw = np.where(ys == 3, 50.0, 1.0)
    kw = dict(hidden_layer_sizes=(16,), max_epochs=10, lr=0.02, random_state=0)
    plain = ContinualClassifier(strategy="replay", **kw).fit(Xs, ys, task_ids=t)
    weighted = ContinualClassifier(strategy="replay", **kw).fit(Xs, ys, task_ids=t,
                                                               sample_weight=sw)
    # class 3 (first task) is learned heavily and kept through the replayed weights
    assert (weighted.predict(Xs) == 3).mean() > (plain.predict(Xs) == 3).mean()
    plugin = weighted.net_.plugins[0]
    held = plugin.buffer.w[:plugin.buffer.size]
    labels = plugin.buffer.y[:plugin.buffer.size]
    assert torch.equal(held[labels == 3], torch.full_like(held[labels == 3], 50.0))


def test_reservoir_buffer_weights():
    buf = ReservoirBuffer(10)
    X = torch.randn(6, 2)
    buf.add(X, torch.arange(6), torch.zeros(6, dtype=torch.long))
    assert buf.w is None
    assert buf.sample(4, return_weight=True)[3] is None
    buf.add(X, torch.arange(6), torch.zeros(6, dtype=torch.long), torch.full((6,), 2.0))
    assert buf.size == 10
    assert buf.w[6:].tolist() == [2.0] * 4  # the free slots took the weighted rows
    assert set(buf.w.tolist()) <= {1.0, 2.0}
    Xm, ym, tm, wm = buf.sample(50, return_weight=True)
    assert wm.shape == (50,) and set(wm.tolist()) <= {1.0, 2.0}


# ------------------------------------------------------------------ helpers
def test_check_sample_weight():
    assert check_sample_weight(None, 3) is None
    assert check_sample_weight(2.0, 3) is None
    assert check_sample_weight([1, 1, 1], 3) is None
    w = check_sample_weight([0, 1, 2], 3)
    assert w.dtype == np.float32 and w.tolist() == [0, 1, 2]


def test_class_weight_table():
    labels = np.array(["a", "b", "c"])
    y = np.array([0, 0, 0, 1, -1])  # -1: missing, "c" absent
    np.testing.assert_allclose(class_weight_table("balanced", y, labels),
                               [4 / 6, 4 / 2, 1.0])
    np.testing.assert_allclose(class_weight_table({"b": 3}, y, labels), [1, 3, 1])
    np.testing.assert_allclose(class_weight_table({np.str_("c"): 0.5}, y, labels), [1, 1, 0.5])
    assert class_weight_table(None, y, labels) is None
