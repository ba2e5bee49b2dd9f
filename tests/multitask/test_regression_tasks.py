"""MultiTaskRegressor and mixed classification/regression targets, on real data."""

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sktransfer import MultiTaskClassifier, MultiTaskRegressor

FAST = dict(hidden_layer_sizes=(32,), max_epochs=60, lr=3e-3, batch_size=32, random_state=0)


@pytest.fixture(scope="module")
def diabetes_tasks():
    """Real diabetes data; two targets: disease progression and BMI (a held-out column)."""
    X, y = load_diabetes(return_X_y=True)
    bmi = X[:, 2] * 100
    X = StandardScaler().fit_transform(np.delete(X, 2, axis=1))
    Y = np.column_stack([y, bmi])
    rng = np.random.RandomState(0)
    Y[rng.rand(*Y.shape) < 0.2] = np.nan
    return train_test_split(X, Y, test_size=0.3, random_state=0)


def test_regressor_learns_both_targets_with_missing_values(diabetes_tasks):
    X_tr, X_te, Y_tr, Y_te = diabetes_tasks
    reg = MultiTaskRegressor(**FAST).fit(X_tr, Y_tr)
    assert reg.task_types_ == ["regression", "regression"]
    pred = reg.predict(X_te)
    assert pred.shape == Y_te.shape and pred.dtype == np.float64
    for k in range(2):
        keep = ~np.isnan(Y_te[:, k])
        r2 = 1 - np.mean((pred[keep, k] - Y_te[keep, k]) ** 2) / np.var(Y_te[keep, k])
        assert r2 > 0.2, (k, r2)
    assert reg.score(X_te, Y_te) > 0.2
    # Targets are learned on a standard scale, predicted on the original one.
    assert abs(np.nanmean(pred[:, 0]) - np.nanmean(Y_te[:, 0])) < 30


def test_regressor_task_format_and_uncertainty(diabetes_tasks):
    X_tr, X_te, Y_tr, _ = diabetes_tasks
    rows = ~np.isnan(Y_tr[:, 0])
    t = np.arange(len(X_tr)) % 2
    y = np.where(t == 0, Y_tr[:, 0], np.nan_to_num(Y_tr[:, 1]))
    keep = rows & ~np.isnan(Y_tr[:, 1])
    reg = MultiTaskRegressor(weighting="uncertainty", **FAST).fit(X_tr[keep], y[keep],
                                                                  task_ids=t[keep])
    assert reg.score(X_tr[keep], y[keep], task_ids=t[keep]) > 0.3
    weights = reg.net_.history[-1, "train_task_weights"]
    log_vars = reg.net_.module_.weighter.log_vars.detach().numpy()
    np.testing.assert_allclose(weights, 0.5 * np.exp(-log_vars), rtol=0.2)  # Gaussian form


def test_single_task_regressor_matches_r2():
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    reg = MultiTaskRegressor(**FAST).fit(X, y)
    from sklearn.metrics import r2_score

    assert reg.score(X, y) == pytest.approx(r2_score(y, reg.predict(X)))
    assert reg.score(X, y) > 0.4


def test_mixed_classification_and_regression_targets():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    ink = X.sum(1)  # a real continuous target: total ink of the digit
    Y = np.column_stack([y, ink]).astype(float)
    Y[np.random.RandomState(0).rand(*Y.shape) < 0.2] = np.nan
    X_tr, X_te, Y_tr, Y_te = train_test_split(X, Y, test_size=0.3, random_state=0)
    clf = MultiTaskClassifier(task_types=["classification", "regression"],
                              **dict(FAST, max_epochs=30)).fit(X_tr, Y_tr)
    assert clf.task_types_ == ["classification", "regression"]
    assert clf.task_classes_[1] is None
    pred = clf.predict(X_te)
    keep0, keep1 = ~np.isnan(Y_te[:, 0]), ~np.isnan(Y_te[:, 1])
    assert np.mean(pred[keep0, 0] == Y_te[keep0, 0]) > 0.85
    assert np.corrcoef(pred[keep1, 1], Y_te[keep1, 1])[0, 1] > 0.9
    proba = clf.predict_proba(X_te)
    assert proba[0].shape == (len(X_te), 10) and proba[1] is None
    assert 0.5 < clf.score(X_te, Y_te) <= 1.0


def test_mixed_task_format_by_name():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    task = np.where(np.arange(len(y)) % 2 == 0, "digit", "ink")
    target = np.where(task == "digit", y, X.sum(1)).astype(float)
    clf = MultiTaskClassifier(task_types={"ink": "regression"}, **dict(FAST, max_epochs=20))
    clf.fit(X, target, task_ids=task)
    pred = clf.predict(X, task_ids=task)
    digit = task == "digit"
    assert np.mean(pred[digit] == target[digit]) > 0.85
    assert np.corrcoef(pred[~digit], target[~digit])[0, 1] > 0.9
    proba = clf.predict_proba(X[:4], task_ids=task[:4])
    assert np.all(np.isnan(proba[1])) and np.allclose(proba[0].sum(), 1)


@pytest.mark.parametrize("task_types, match", [
    (["regression"], r"one type per task \(2\)"),
    ({"nope": "regression"}, r"unknown tasks \['nope'\]"),
    (["classification", "ranking"], r"task_types must be in"),
])
def test_bad_task_types_raise_errors_that_say_what_is_wrong(task_types, match):
    X, y = load_digits(return_X_y=True)
    Y = np.column_stack([y, y % 2])
    with pytest.raises(ValueError, match=match):
        MultiTaskClassifier(task_types=task_types, max_epochs=1).fit(X, Y)


def test_continuous_target_in_a_classification_task_says_how_to_fix():
    X, y = load_digits(return_X_y=True)
    Y = np.column_stack([y, X.sum(1) / 7.3])
    with pytest.raises(ValueError, match="declare it with task_types"):
        MultiTaskClassifier(max_epochs=1).fit(X, Y)
