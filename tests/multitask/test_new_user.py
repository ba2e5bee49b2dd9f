"""What a new user of the multi-task estimators runs into, from the README and the docs."""

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.datasets import load_digits
from sklearn.exceptions import DataConversionWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    mean_absolute_error,
    r2_score,
)
from sklearn.model_selection import GridSearchCV, KFold, cross_validate

from sktransfer import MultiTaskClassifier, MultiTaskRegressor
from sktransfer.metrics import get_task_scorer, make_task_scorer

pd = pytest.importorskip("pandas")

FAST = dict(hidden_layer_sizes=(16,), max_epochs=4, lr=3e-3, batch_size=64, random_state=0)
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0)[:600], y[:600]


@pytest.fixture(scope="module")
def mixed_model(digits):
    """A 2-D Y of a classification task (the digit) and a regression task (the ink)."""
    X, y = digits
    Y = pd.DataFrame({"digit": y, "ink": X.sum(1)})
    clf = MultiTaskClassifier(task_types={"ink": "regression"}, **FAST).fit(X, Y)
    return clf, X, Y


# ------------------------------------------------- 1. a DataFrame Y of mixed dtypes
def test_score_of_a_dataframe_mixing_numeric_and_string_tasks(digits):
    X, y = digits
    Y = pd.DataFrame({"digit": y, "parity": np.where(y % 2, "odd", "even")})
    clf = MultiTaskClassifier(**FAST).fit(X, Y)
    assert clf.task_classes_[0].dtype.kind == "i"  # each column keeps its own dtype
    pred = clf.predict(X)
    expected = np.mean([accuracy_score(Y["digit"], pred[:, 0].astype(int)),
                        accuracy_score(Y["parity"], pred[:, 1].astype(str))])
    assert clf.score(X, Y) == pytest.approx(expected)
    assert get_task_scorer("accuracy")(clf, X, Y) == pytest.approx(expected)
    # so searches and cross-validation get real numbers, not NaN
    res = cross_validate(clf, X, Y, cv=KFold(2))
    assert np.all(np.isfinite(res["test_score"]))


# ------------------------------------------------------------- 2. task scorers
def test_task_scorers_on_a_regressor_fitted_on_a_2d_Y(digits):
    X, _ = digits
    Y = np.column_stack([X.sum(1), X[:, :32].sum(1)])
    reg = MultiTaskRegressor(**FAST).fit(X, Y)
    pred = reg.predict(X)
    per_task = [r2_score(Y[:, k], pred[:, k]) for k in range(2)]
    assert get_task_scorer("r2")(reg, X, Y) == pytest.approx(np.mean(per_task))
    assert get_task_scorer()(reg, X, Y) == pytest.approx(reg.score(X, Y))
    mae = get_task_scorer("neg_mean_absolute_error")(reg, X, Y)
    assert mae == pytest.approx(-np.mean([mean_absolute_error(Y[:, k], pred[:, k])
                                          for k in range(2)]))


def test_task_scorers_take_a_metric_per_task_type_or_per_task(mixed_model):
    clf, X, Y = mixed_model
    pred = clf.predict(X)
    acc = accuracy_score(Y["digit"], pred[:, 0].astype(int))
    r2 = r2_score(Y["ink"], pred[:, 1].astype(float))
    # default: accuracy for classification tasks, R^2 for regression tasks
    assert get_task_scorer()(clf, X, Y) == pytest.approx((acc + r2) / 2)
    assert get_task_scorer()(clf, X, Y) == pytest.approx(clf.score(X, Y))
    assert get_task_scorer().score_tasks(clf, X, Y) == pytest.approx({"digit": acc, "ink": r2})
    # one metric for a type, the other type left out (no mean of different metrics)
    f1 = f1_score(Y["digit"], pred[:, 0].astype(int), average="macro")
    assert get_task_scorer({"classification": "f1_macro", "regression": None})(
        clf, X, Y) == pytest.approx(f1)
    assert get_task_scorer({"classification": None})(clf, X, Y) == pytest.approx(r2)
    # per task, which wins over its type
    mae = mean_absolute_error(Y["ink"], pred[:, 1].astype(float))
    scorer = get_task_scorer({"ink": "neg_mean_absolute_error", "classification": None})
    assert scorer(clf, X, Y) == pytest.approx(-mae)
    custom = get_task_scorer({"digit": make_task_scorer(balanced_accuracy_score),
                              "regression": None})
    assert custom(clf, X, Y) == pytest.approx(
        balanced_accuracy_score(Y["digit"], pred[:, 0].astype(int)))
    assert repr(get_task_scorer()) == (
        "TaskScorer({'classification': 'accuracy', 'regression': 'r2'}, average='tasks')")


def test_one_metric_for_tasks_of_both_types_is_an_error(mixed_model):
    clf, X, Y = mixed_model
    with pytest.raises(ValueError, match=r"'accuracy' scores classification tasks, but task "
                                         r"'ink' is a regression task.*get_task_scorer\(\{"):
        get_task_scorer("accuracy")(clf, X, Y)
    with pytest.raises(ValueError, match=r"'r2' scores regression tasks, but task 'digit' is a "
                                         r"classification task"):
        get_task_scorer("r2")(clf, X, Y)
    with pytest.raises(ValueError, match=r"names \['colour'\], which is neither a task of "
                                         r"the estimator"):
        get_task_scorer({"colour": "accuracy"})(clf, X, Y)
    with pytest.raises(ValueError, match="nothing to score"):
        get_task_scorer({"classification": None, "regression": None})(clf, X, Y)


def test_task_scorers_in_the_task_format_of_a_mixed_model(digits):
    X, y = digits
    t = np.where(np.arange(len(y)) % 2, "digit", "ink")
    target = np.where(t == "digit", y, X.sum(1))
    clf = MultiTaskClassifier(task_types={"ink": "regression"}, **FAST).fit(X, target,
                                                                           task_ids=t)
    pred = clf.predict(X, task_ids=t)
    d, i = t == "digit", t == "ink"
    acc = accuracy_score(target[d], pred[d].astype(float))
    r2 = r2_score(target[i], pred[i].astype(float))
    assert get_task_scorer()(clf, X, target, task_ids=t) == pytest.approx((acc + r2) / 2)
    with pytest.raises(ValueError, match="average='samples' computes one metric"):
        get_task_scorer(average="samples")(clf, X, target, task_ids=t)
    sklearn.set_config(enable_metadata_routing=True)
    res = cross_validate(clf, X, target, cv=KFold(2), params={"task_ids": t},
                         scoring={"acc": get_task_scorer({"regression": None}),
                                  "r2": get_task_scorer({"classification": None})})
    assert np.all(np.isfinite(res["test_acc"])) and np.all(np.isfinite(res["test_r2"]))


# ------------------------------------- 3. task_ids missing at predict / score time
FIXES = [r"sklearn.set_config(enable_metadata_routing=True)", "task_column=",
         "sktransfer.metrics.get_task_scorer"]


@pytest.fixture(scope="module")
def task_data(digits):
    X, y = digits
    t = np.where(np.arange(len(y)) % 2, "parity", "size")
    y = np.where(t == "parity", y % 2, y >= 5).astype(int)
    return X, y, t


def test_missing_task_ids_says_how_to_fix_it(task_data):
    X, y, t = task_data
    clf = MultiTaskClassifier(**FAST).fit(X, y, task_ids=t)
    for method in (clf.predict, clf.predict_proba, lambda X: clf.score(X, y)):
        with pytest.raises(ValueError, match="task_ids is required") as info:
            method(X)
        for fix in FIXES:
            assert fix in str(info.value), (fix, str(info.value))


@pytest.mark.parametrize("routing, scoring", [(False, None), (True, "accuracy")])
def test_grid_search_nan_warning_names_the_fixes(task_data, routing, scoring):
    X, y, t = task_data
    sklearn.set_config(enable_metadata_routing=routing)
    search = GridSearchCV(MultiTaskClassifier(**dict(FAST, max_epochs=1)), {"lr": [1e-3]},
                          cv=2, scoring=scoring)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.fit(X, y, task_ids=t)
    text = "\n".join(str(w.message) for w in caught)
    assert np.isnan(search.cv_results_["mean_test_score"]).all()
    assert ("Metadata routing is off" if not routing else "Metadata routing is on") in text
    for fix in FIXES:
        assert fix in text, fix


# --------------------------------------------------- 4. the user guide runs as written
# tests/test_docs.py runs every page of the user guide top to bottom.


# --------------------------------------- 8. probabilities of a regressor's class tasks
def test_regressor_predict_proba_for_its_classification_tasks(digits):
    X, y = digits
    Y = pd.DataFrame({"digit": y, "ink": X.sum(1)})
    reg = MultiTaskRegressor(task_types={"digit": "classification"}, **FAST).fit(X, Y)
    clf = MultiTaskClassifier(task_types={"ink": "regression"}, **FAST).fit(X, Y)
    proba = reg.predict_proba(X[:5])
    assert isinstance(proba, list) and proba[1] is None
    assert proba[0].shape == (5, 10)
    np.testing.assert_allclose(proba[0].sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(reg.task_classes_[0], np.arange(10))
    assert reg.task_classes_[1] is None
    pred = reg.predict(X[:5])
    np.testing.assert_array_equal(reg.task_classes_[0][proba[0].argmax(1)],
                                  pred[:, 0].astype(int))
    # the same model as the classifier with the same tasks: the same probabilities
    np.testing.assert_allclose(proba[0], clf.predict_proba(X[:5])[0], rtol=1e-5, atol=1e-7)
    scorer = get_task_scorer({"classification": "neg_log_loss"})
    assert np.isfinite(scorer(reg, X, Y))
    # a regressor without a classification task has no predict_proba, as in scikit-learn
    only_reg = MultiTaskRegressor(**FAST).fit(X, X[:, :2])
    assert not hasattr(only_reg, "predict_proba")
    assert not hasattr(MultiTaskRegressor(), "predict_proba")
    assert hasattr(MultiTaskRegressor(task_types={"digit": "classification"}), "predict_proba")


def test_regressor_predict_proba_in_the_task_format(digits):
    X, y = digits
    t = np.where(np.arange(len(y)) % 2, "digit", "ink")
    target = np.where(t == "digit", y, X.sum(1))
    reg = MultiTaskRegressor(task_types={"digit": "classification"}, **FAST).fit(
        X, target, task_ids=t)
    proba = reg.predict_proba(X[:6], task_ids=t[:6])
    np.testing.assert_array_equal(reg.classes_, np.arange(10))
    assert proba.shape == (6, 10)
    digit = t[:6] == "digit"
    np.testing.assert_allclose(proba[digit].sum(1), 1, rtol=1e-5)
    assert np.isnan(proba[~digit]).all()


# --------------------------------------------------- 10. verbose per-task columns
def test_verbose_prints_per_task_values_as_rounded_columns(task_data, capsys):
    X, y, t = task_data
    clf = MultiTaskClassifier(verbose=1, weighting="uncertainty", **dict(FAST, max_epochs=2))
    clf.fit(X, y, task_ids=t)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    header = lines[0].split()
    for column in ("train_loss[parity]", "train_loss[size]", "weight[parity]", "weight[size]"):
        assert column in header
    assert "train_task_losses" not in out and "[0." not in out
    assert max(map(len, lines)) < 140, out
    row = lines[-1].split()
    value = row[header.index("train_loss[parity]")]
    assert len(value.replace(".", "").lstrip("0")) <= 4  # 4 significant digits
    # the history keeps the full lists
    losses = clf.net_.history[-1, "train_task_losses"]
    assert isinstance(losses, list) and len(losses) == 2
    assert float(value) == pytest.approx(losses[0], rel=1e-3)


def test_verbose_columns_follow_print_log_settings(task_data, capsys):
    X, y, t = task_data
    # equal weighting: the weights are always 1 and are not printed
    MultiTaskClassifier(verbose=1, **dict(FAST, max_epochs=1)).fit(X, y, task_ids=t)
    out = capsys.readouterr().out
    assert "train_loss[parity]" in out and "weight[" not in out
    params = {"callbacks__print_log__keys_ignored": ["train_task_losses"]}
    MultiTaskClassifier(verbose=1, weighting="uncertainty", net_params=params,
                        **dict(FAST, max_epochs=1)).fit(X, y, task_ids=t)
    out = capsys.readouterr().out
    assert "train_loss[parity]" not in out and "weight[parity]" in out


# ---------------------------------------------------------- 11. error messages
def test_task_ids_must_be_one_per_row(task_data):
    X, y, t = task_data
    clf = MultiTaskClassifier(**dict(FAST, max_epochs=1)).fit(X, y, task_ids=t)
    with pytest.raises(ValueError, match=r"task_ids must hold one task id per row of X.*got "
                                         r"the single value 'parity'.*np.full\(len\(X\), "
                                         r"'parity'\)"):
        clf.predict(X, task_ids="parity")
    with pytest.raises(ValueError, match=r"task_ids must hold one task id per row of X.*"
                                         r"got an array of shape \(600, 2\)"):
        clf.predict(X, task_ids=np.c_[t, t])
    with pytest.warns(DataConversionWarning, match="A column-vector task_ids"):
        clf.predict(X, task_ids=t[:, None])


def test_task_column_name_on_an_array_says_how_to_keep_names(task_data):
    X, y, t = task_data
    with pytest.raises(ValueError, match=re.escape(
            "task_column='region' is a column name, but X is a NumPy array")) as info:
        MultiTaskClassifier(task_column="region", **FAST).fit(X, y)
    assert 'set_output(transform="pandas")' in str(info.value)
    assert "integer index" in str(info.value)
    df = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)]).assign(remainder__region=t)
    with pytest.raises(ValueError, match=r"did you mean 'remainder__region'.*"
                                         r"verbose_feature_names_out=False"):
        MultiTaskClassifier(task_column="region", **FAST).fit(df, y)


@pytest.mark.parametrize("Estimator", [MultiTaskClassifier, MultiTaskRegressor])
def test_column_vector_y_is_raveled_with_a_warning(digits, Estimator):
    X, y = digits
    if Estimator is MultiTaskRegressor:
        y = X.sum(1)
    with pytest.warns(DataConversionWarning, match="A column-vector y was passed"):
        est = Estimator(**FAST).fit(X, y.reshape(-1, 1))
    assert not est.multi_target_ and est.n_tasks_ == 1
    assert est.predict(X[:3]).shape == (3,)
    flat = Estimator(**FAST).fit(X, y)
    np.testing.assert_array_equal(est.predict(X), flat.predict(X))
    assert est.score(X, y.reshape(-1, 1)) == pytest.approx(flat.score(X, y))
