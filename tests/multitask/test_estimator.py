"""Behaviour of MultiTaskClassifier: learning, formats, routing, invariants, errors."""

import pickle
import warnings

import numpy as np
import pytest
import sklearn
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_validate, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch.dataset import ValidSplit

from sktransfer import MultiTaskClassifier
from sktransfer.metrics import get_task_scorer
from sktransfer.multitask import (
    HardSharingNet,
    StaticWeighting,
    TaskConditionedNet,
    UncertaintyWeighting,
)
from sktransfer.multitask._gradient_weighting import _SolverWeighter
from sktransfer.multitask._heads import TaskHeads
from sktransfer.multitask._loss_weighting import _StaticWeighter, _UncertaintyWeighter
from sktransfer.multitask._soft_sharing import ColumnNet

FAST = dict(hidden_layer_sizes=(32,), max_epochs=12, lr=3e-3, batch_size=64, random_state=0)


@pytest.fixture(scope="module")
def digits_tasks():
    """Real digits; each row is one of two tasks: 'which digit' or 'is it >= 5'."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    rng = np.random.RandomState(0)
    task = np.where(rng.rand(len(y)) < 0.5, "digit", "high")
    label = np.where(task == "digit", y.astype(str), np.where(y >= 5, "yes", "no"))
    return train_test_split(X, label, task, test_size=0.3, random_state=0)


@pytest.fixture(scope="module")
def digits_multi_target():
    """Real digits with three targets per row and 30% of the labels missing."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Y = np.column_stack([y, y % 2, y >= 5]).astype(float)
    rng = np.random.RandomState(1)
    Y[rng.rand(*Y.shape) < 0.3] = np.nan
    return train_test_split(X, Y, test_size=0.3, random_state=0)


@pytest.fixture(scope="module")
def fitted_task_model(digits_tasks):
    X_tr, X_te, y_tr, y_te, t_tr, t_te = digits_tasks
    return MultiTaskClassifier(**FAST).fit(X_tr, y_tr, task_ids=t_tr)


# ----------------------------------------------------------------- learning
def test_task_format_learns_on_real_digits(fitted_task_model, digits_tasks):
    X_tr, X_te, y_tr, y_te, t_tr, t_te = digits_tasks
    clf = fitted_task_model
    assert list(clf.tasks_) == ["digit", "high"]
    assert clf.n_tasks_ == 2
    pred = clf.predict(X_te, task_ids=t_te)
    for task, chance in [("digit", 0.1), ("high", 0.5)]:
        rows = t_te == task
        acc = np.mean(pred[rows] == y_te[rows])
        assert acc > chance + 0.3, (task, acc)
    # Each row is answered with a label of its own task.
    assert set(pred[t_te == "high"]) <= {"yes", "no"}
    assert set(pred[t_te == "digit"]) <= set(map(str, range(10)))


def test_loss_goes_down_and_history_has_per_task_values(fitted_task_model):
    hist = fitted_task_model.net_.history
    losses = np.array(hist[:, "train_task_losses"])
    weights = np.array(hist[:, "train_task_weights"])
    assert losses.shape == (FAST["max_epochs"], 2)
    assert np.all(losses[-1] < 0.5 * losses[0])
    assert np.allclose(weights, 1.0)
    assert hist[-1, "train_loss"] < hist[0, "train_loss"]


def test_predict_proba_over_all_classes_zero_outside_task(fitted_task_model, digits_tasks):
    X_te, t_te = digits_tasks[1], digits_tasks[5]
    clf = fitted_task_model
    proba = clf.predict_proba(X_te, task_ids=t_te)
    assert proba.shape == (len(X_te), len(clf.classes_))
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    high_cols = np.isin(clf.classes_, ["yes", "no"])
    assert np.all(proba[t_te == "digit"][:, high_cols] == 0)
    assert np.all(proba[t_te == "high"][:, ~high_cols] == 0)
    pred = clf.predict(X_te, task_ids=t_te)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], pred)


@pytest.mark.parametrize("architecture", ["hard", "conditioned"])
@pytest.mark.parametrize("weighting", ["equal", "uncertainty"])
def test_multi_target_with_missing_labels_learns(digits_multi_target, architecture, weighting):
    X_tr, X_te, Y_tr, Y_te = digits_multi_target
    clf = MultiTaskClassifier(architecture=architecture, weighting=weighting, **FAST)
    clf.fit(X_tr, Y_tr)
    assert clf.multi_target_ and clf.n_tasks_ == 3
    pred = clf.predict(X_te)
    assert pred.shape == Y_te.shape
    for k, chance in enumerate([0.1, 0.5, 0.5]):
        keep = ~np.isnan(Y_te[:, k])
        assert np.mean(pred[keep, k] == Y_te[keep, k]) > chance + 0.25
    assert clf.score(X_te, Y_te) > 0.75
    proba = clf.predict_proba(X_te)
    assert [p.shape[1] for p in proba] == [10, 2, 2]
    weights = np.array(clf.net_.history[:, "train_task_weights"])
    if weighting == "uncertainty":
        assert not np.allclose(weights[-1], 1.0)  # the learned weights moved
        log_vars = clf.net_.module_.weighter.log_vars.detach().numpy()
        np.testing.assert_allclose(weights[-1], np.exp(-log_vars), rtol=0.2)
    else:
        assert np.allclose(weights, 1.0)


def test_multi_target_dataframe_names_tasks(digits_multi_target):
    pd = pytest.importorskip("pandas")
    X_tr, X_te, Y_tr, _ = digits_multi_target
    Y = pd.DataFrame(Y_tr, columns=["digit", "odd", "high"])
    clf = MultiTaskClassifier(**dict(FAST, max_epochs=2)).fit(X_tr, Y)
    assert list(clf.tasks_) == ["digit", "odd", "high"]


def test_missing_label_marks_the_missing_entries_of_an_integer_Y(digits_multi_target):
    X_tr, _, Y_tr, _ = digits_multi_target
    Y = np.where(np.isnan(Y_tr), -1, Y_tr).astype(int)
    clf = MultiTaskClassifier(missing_label=-1, **dict(FAST, max_epochs=2)).fit(X_tr, Y)
    assert [c.tolist() for c in clf.classes_][1:] == [[0, 1], [0, 1]]


def test_static_weights_scale_task_losses(digits_multi_target):
    X_tr, _, Y_tr, _ = digits_multi_target
    clf = MultiTaskClassifier(weighting="static", task_weights=[1.0, 0.0, 2.0],
                              **dict(FAST, max_epochs=3)).fit(X_tr, Y_tr)
    np.testing.assert_allclose(clf.net_.history[-1, "train_task_weights"], [1.0, 0.0, 2.0])
    # Weight 0: that task's head gets no gradient and keeps its initial weights.
    init = MultiTaskClassifier(weighting="static", task_weights=[1.0, 0.0, 2.0],
                               **dict(FAST, max_epochs=0)).fit(X_tr, Y_tr)
    heads, heads0 = (c.net_.module_.model.heads.weight.detach() for c in (clf, init))
    assert torch.equal(heads[1], heads0[1])
    assert not torch.equal(heads[0], heads0[0])


def test_task_weights_by_name(digits_tasks):
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    clf = MultiTaskClassifier(task_weights={"high": 0.5}, **dict(FAST, max_epochs=1))
    clf.fit(X_tr, y_tr, task_ids=t_tr)
    np.testing.assert_allclose(clf.net_.history[-1, "train_task_weights"], [1.0, 0.5])


def test_single_task_is_a_plain_classifier():
    X, y = load_digits(n_class=3, return_X_y=True)
    clf = MultiTaskClassifier(**FAST).fit(X / 16, y)
    assert clf.n_tasks_ == 1 and clf.score(X / 16, y) > 0.9
    assert clf.predict_proba(X[:5] / 16).shape == (5, 3)


def test_images_with_the_default_conv_trunk():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).reshape(-1, 1, 8, 8)[:300]
    t = np.arange(300) % 2
    y = np.where(t == 0, y[:300], y[:300] % 2)
    clf = MultiTaskClassifier(max_epochs=1, random_state=0).fit(X, y, task_ids=t)
    assert type(clf.net_.module_.model.trunk).__name__ == "Conv4"
    assert clf.input_shape_ == (1, 8, 8)
    assert clf.predict(X[:4], task_ids=t[:4]).shape == (4,)


@pytest.mark.parametrize("kind", ["class", "factory", "instance"])
def test_user_trunk_is_used_and_copied(digits_tasks, kind):
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks

    class Trunk(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(64, 16)

        def forward(self, X):
            return torch.relu(self.lin(X))

    module = {"class": Trunk, "factory": lambda: Trunk(), "instance": Trunk()}[kind]
    clf = MultiTaskClassifier(module=module, **dict(FAST, max_epochs=2))
    clf.fit(X_tr, y_tr, task_ids=t_tr)
    assert clf.net_.module_.model.heads.weight.shape[-1] == 16
    if kind == "instance":  # the given instance is copied, never trained in place
        assert clf.net_.module_.model.trunk is not module


def test_validation_split_records_valid_task_losses(digits_tasks):
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    clf = MultiTaskClassifier(train_split=ValidSplit(5), **dict(FAST, max_epochs=2))
    clf.fit(X_tr, y_tr, task_ids=t_tr)
    assert len(clf.net_.history[-1, "valid_task_losses"]) == 2
    assert "valid_loss" in clf.net_.history[-1]


def test_verbose_prints_epoch_table(digits_tasks, capsys):
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    MultiTaskClassifier(verbose=1, **dict(FAST, max_epochs=2)).fit(X_tr, y_tr, task_ids=t_tr)
    assert "train_loss" in capsys.readouterr().out
    MultiTaskClassifier(verbose=0, **dict(FAST, max_epochs=2)).fit(X_tr, y_tr, task_ids=t_tr)
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------- invariants
def test_random_state_reproducible_and_global_rng_untouched(digits_tasks):
    X_tr, X_te, y_tr, _, t_tr, t_te = digits_tasks
    state = torch.random.get_rng_state()
    a = MultiTaskClassifier(**dict(FAST, max_epochs=2)).fit(X_tr, y_tr, task_ids=t_tr)
    b = MultiTaskClassifier(**dict(FAST, max_epochs=2)).fit(X_tr, y_tr, task_ids=t_tr)
    c = MultiTaskClassifier(**dict(FAST, max_epochs=2, random_state=1)).fit(
        X_tr, y_tr, task_ids=t_tr)
    assert torch.equal(state, torch.random.get_rng_state())
    pa, pb, pc = (m.predict_proba(X_te, task_ids=t_te) for m in (a, b, c))
    np.testing.assert_array_equal(pa, pb)
    assert not np.array_equal(pa, pc)


def test_fit_restores_the_thread_count(digits_tasks):
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    before = torch.get_num_threads()
    MultiTaskClassifier(**dict(FAST, max_epochs=1)).fit(X_tr, y_tr, task_ids=t_tr)
    assert torch.get_num_threads() == before


def test_clone_drops_the_fit_and_pickle_keeps_the_predictions(fitted_task_model, digits_tasks):
    X_te, t_te = digits_tasks[1], digits_tasks[5]
    cloned = clone(fitted_task_model)
    assert not hasattr(cloned, "net_")
    assert cloned.get_params()["hidden_layer_sizes"] == FAST["hidden_layer_sizes"]
    restored = pickle.loads(pickle.dumps(fitted_task_model))
    np.testing.assert_array_equal(restored.predict_proba(X_te, task_ids=t_te),
                                  fitted_task_model.predict_proba(X_te, task_ids=t_te))


# A model pickled by sktransfer 0.1 names its classes by their 0.1 module paths.
OLD_PATHS = [
    (_StaticWeighter, "sktransfer.multitask._weighting", "_StaticWeighter"),
    (_UncertaintyWeighter, "sktransfer.multitask._weighting", "_UncertaintyWeighter"),
    (UncertaintyWeighting, "sktransfer.multitask._weighting", "UncertaintyWeighting"),
    (_SolverWeighter, "sktransfer.multitask._gradient_weighting", "_GradientWeighter"),
    (HardSharingNet, "sktransfer.multitask._hard", "HardSharing"),
    (TaskConditionedNet, "sktransfer.multitask._conditioned", "TaskConditioned"),
    (ColumnNet, "sktransfer.multitask._columns", "ColumnNet"),
    (TaskHeads, "sktransfer.multitask._columns", "TaskHeads"),
]


@pytest.mark.parametrize("architecture, weighting", [
    ("hard", UncertaintyWeighting()), ("conditioned", "equal"), ("cross_stitch", "cagrad"),
    ("mtan", "equal"),
])
def test_models_pickled_with_the_0_1_class_paths_load(digits_tasks, architecture, weighting):
    X_tr, X_te, y_tr, _, t_tr, t_te = digits_tasks
    clf = MultiTaskClassifier(architecture=architecture, weighting=weighting,
                              **dict(FAST, max_epochs=1)).fit(X_tr, y_tr, task_ids=t_tr)
    current = [(cls, cls.__module__, cls.__qualname__) for cls, _, _ in OLD_PATHS]
    try:  # pickle by the 0.1 names
        for cls, module, name in OLD_PATHS:
            cls.__module__, cls.__qualname__ = module, name
        data = pickle.dumps(clf)
    finally:
        for cls, module, name in current:
            cls.__module__, cls.__qualname__ = module, name
    old = {f"{module}.{name}" for cls, module, name in OLD_PATHS
           if isinstance(clf.net_.module_.model, cls) or isinstance(clf.net_.module_.weighter, cls)}
    assert old, "the model holds a class that moved"
    for path in old:
        assert path.rsplit(".", 1)[0].encode() in data, path
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loading an old model does not warn
        restored = pickle.loads(data)
    assert type(restored.net_.module_.model) is type(clf.net_.module_.model)
    assert type(restored.net_.module_.weighter) is type(clf.net_.module_.weighter)
    np.testing.assert_array_equal(restored.predict_proba(X_te, task_ids=t_te),
                                  clf.predict_proba(X_te, task_ids=t_te))
    restored.partial_fit(X_tr, y_tr, task_ids=t_tr)  # and it trains on


def test_safe_weights_round_trip(fitted_task_model, digits_tasks, tmp_path):
    X_te, t_te = digits_tasks[1], digits_tasks[5]
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    expected = fitted_task_model.predict_proba(X_te, task_ids=t_te)
    for name in ("w.safetensors", "w.pt"):
        fitted_task_model.save_weights(tmp_path / name)
        other = MultiTaskClassifier(**dict(FAST, max_epochs=0)).fit(X_tr, y_tr, task_ids=t_tr)
        assert not np.allclose(other.predict_proba(X_te, task_ids=t_te), expected)
        other.load_weights(tmp_path / name)
        np.testing.assert_allclose(other.predict_proba(X_te, task_ids=t_te), expected)


# ------------------------------------------------------ pipelines, routing
def test_pipeline_grid_search_with_metadata_routing(digits_tasks):
    X_tr, X_te, y_tr, y_te, t_tr, t_te = digits_tasks
    sklearn.set_config(enable_metadata_routing=True)
    pipe = make_pipeline(StandardScaler(), MultiTaskClassifier(**dict(FAST, max_epochs=5)))
    grid = {"multitaskclassifier__weighting": ["equal", "uncertainty", StaticWeighting([1, 2])]}
    search = GridSearchCV(pipe, grid, cv=2).fit(X_tr, y_tr, task_ids=t_tr)
    assert len(search.cv_results_["mean_test_score"]) == 3
    assert search.best_score_ > 0.7
    assert search.score(X_te, y_te, task_ids=t_te) > 0.7
    # Strategy parameters are searchable too.
    grid = {"multitaskclassifier__weighting": [UncertaintyWeighting()],
            "multitaskclassifier__weighting__init_log_var": [0.0, 1.0]}
    search = GridSearchCV(pipe, grid, cv=2).fit(X_tr, y_tr, task_ids=t_tr)
    assert search.best_estimator_[-1].weighting.init_log_var in (0.0, 1.0)


def test_cross_validate_with_task_scorers(digits_tasks):
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    sklearn.set_config(enable_metadata_routing=True)
    scoring = {"acc": get_task_scorer("accuracy"), "f1": get_task_scorer("f1_macro"),
               "nll": get_task_scorer("neg_log_loss")}
    res = cross_validate(MultiTaskClassifier(**dict(FAST, max_epochs=5)), X_tr, y_tr,
                         params={"task_ids": t_tr}, cv=2, scoring=scoring)
    assert np.all(res["test_acc"] > 0.7)
    assert np.all(res["test_f1"] > 0.6)
    assert np.all(res["test_nll"] < 0)


def test_routing_off_uses_task_column(digits_tasks):
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    assert not sklearn.get_config()["enable_metadata_routing"]
    X = np.column_stack([X_tr, (t_tr == "high").astype(float)])
    clf = MultiTaskClassifier(task_column=-1, **dict(FAST, max_epochs=5))
    res = cross_validate(clf, X, y_tr, cv=2, scoring=["accuracy", "f1_macro"])
    assert np.all(res["test_accuracy"] > 0.7)
    fitted = clf.fit(X, y_tr)
    assert fitted.n_features_in_ == 64 and list(fitted.tasks_) == [0.0, 1.0]


def test_task_column_by_name_in_dataframe(digits_tasks):
    pd = pytest.importorskip("pandas")
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    df = pd.DataFrame(X_tr, columns=[f"px{i}" for i in range(64)]).assign(task=t_tr)
    clf = MultiTaskClassifier(task_column="task", **dict(FAST, max_epochs=2)).fit(df, y_tr)
    assert list(clf.tasks_) == ["digit", "high"]
    assert clf.predict(df.iloc[:5]).shape == (5,)


def test_task_scorer_matches_manual_per_task_mean(fitted_task_model, digits_tasks):
    X_te, y_te, t_te = digits_tasks[1], digits_tasks[3], digits_tasks[5]
    pred = fitted_task_model.predict(X_te, task_ids=t_te)
    per_task = [np.mean(pred[t_te == k] == y_te[t_te == k]) for k in ("digit", "high")]
    score = get_task_scorer("accuracy")(fitted_task_model, X_te, y_te, task_ids=t_te)
    assert score == pytest.approx(np.mean(per_task))
    score = get_task_scorer("accuracy", average="samples")(
        fitted_task_model, X_te, y_te, task_ids=t_te)
    assert score == pytest.approx(np.mean(pred == y_te))


# -------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(architecture="tree"),
         r"The 'architecture' parameter of MultiTaskClassifier must be a str among .*"
         r"Got 'tree' instead"),
        (dict(weighting="magic"), r"The 'weighting' parameter of MultiTaskClassifier must"),
        (dict(weighting="static"), r"needs task_weights"),
        (dict(task_weights=[1.0]), r"one weight per task \(2\)"),
        (dict(task_weights=[1.0, -1.0]), r"non-negative"),
        (dict(weighting="uncertainty", task_weights=[1.0, 1.0]), r"cannot be combined"),
        (dict(task_weights={"nope": 1.0}), r"unknown tasks \['nope'\]"),
        (dict(device="tpu"), r"device must be one of"),
        (dict(lr=-1.0), r"The 'lr' parameter of MultiTaskClassifier must be a float in the "
         r"range \(0.0, inf\)"),
        (dict(lr="0.01"), r"The 'lr' parameter of MultiTaskClassifier must be"),
        (dict(lr=np.inf), r"The 'lr' parameter"),
        (dict(lr=np.nan), r"The 'lr' parameter"),
        (dict(hidden_layer_sizes=(0,)), r"hidden_layer_sizes must be positive"),
    ],
)
def test_bad_parameters_raise_errors_that_name_them(digits_tasks, kwargs, match):
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    with pytest.raises(ValueError, match=match):
        MultiTaskClassifier(**dict(FAST, max_epochs=1, **kwargs)).fit(X_tr, y_tr, task_ids=t_tr)


def test_cuda_without_gpu_is_a_clear_error(digits_tasks):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    with pytest.raises(ValueError, match="no CUDA device is available"):
        MultiTaskClassifier(device="cuda", max_epochs=1).fit(X_tr, y_tr, task_ids=t_tr)


def test_bad_inputs_raise_errors_that_name_the_problem(fitted_task_model, digits_tasks,
                                                        digits_multi_target):
    X_tr, X_te, y_tr, _, t_tr, t_te = digits_tasks
    clf = MultiTaskClassifier(**dict(FAST, max_epochs=1))
    X_nan = X_tr.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(X_nan, y_tr, task_ids=t_tr)
    with pytest.raises(ValueError, match="task_ids has 3 entries but X has"):
        clf.fit(X_tr, y_tr, task_ids=t_tr[:3])
    with pytest.raises(ValueError, match="requires y"):
        clf.fit(X_tr, None)
    with pytest.raises(ValueError, match="task_ids is required: this model was fitted on 2"):
        fitted_task_model.predict(X_te)
    with pytest.raises(ValueError, match=r"tasks not seen in fit: \['colour'\]"):
        fitted_task_model.predict(X_te[:2], task_ids=["digit", "colour"])
    with pytest.raises(ValueError, match="X has 10 features, but MultiTaskClassifier is expecting"):
        fitted_task_model.predict(X_te[:, :10], task_ids=t_te)
    with pytest.raises(ValueError, match="Expected 2D array"):
        fitted_task_model.predict(X_te[0], task_ids=t_te[:1])
    X_mt, _, Y_mt, _ = digits_multi_target
    Y_bad = Y_mt.copy()
    Y_bad[:, 1] = np.nan
    with pytest.raises(ValueError, match=r"task 1 \(column 1 of Y\) has no label in any row"):
        clf.fit(X_mt, Y_bad)
    with pytest.raises(ValueError, match="task_ids cannot be combined with a 2-D Y"):
        clf.fit(X_mt, Y_mt, task_ids=np.zeros(len(X_mt)))
    with pytest.raises(ValueError, match="Unknown label type"):
        clf.fit(X_tr, np.linspace(0, 1, len(X_tr)))


def test_failed_fit_leaves_fitted_model_as_it_was(digits_tasks):
    X_tr, X_te, y_tr, _, t_tr, t_te = digits_tasks
    clf = MultiTaskClassifier(**dict(FAST, max_epochs=2)).fit(X_tr, y_tr, task_ids=t_tr)
    before = clf.predict_proba(X_te, task_ids=t_te)
    state = dict(clf.__dict__)
    with pytest.raises(ValueError):
        clf.fit(X_tr[:, :5], y_tr, task_ids=np.zeros(3))
    with pytest.raises(ValueError):  # fails deep inside: after validation, in the network
        clf.set_params(module=lambda: torch.nn.Linear(3, 3)).fit(X_tr, y_tr, task_ids=t_tr)
    clf.set_params(module=None)
    assert clf.n_features_in_ == 64 and clf.net_ is state["net_"]
    np.testing.assert_array_equal(clf.predict_proba(X_te, task_ids=t_te), before)


# ---------------------------------------------------------------- partial_fit
def test_partial_fit_learns_in_chunks_and_checks_labels(digits_tasks):
    X_tr, X_te, y_tr, y_te, t_tr, t_te = digits_tasks
    classes = {"digit": [str(d) for d in range(10)], "high": ["no", "yes"]}
    clf = MultiTaskClassifier(**dict(FAST, lr=5e-3))
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X_tr[:50], y_tr[:50], task_ids=t_tr[:50])
    assert not hasattr(clf, "net_")
    scores = []
    for _epoch in range(4):
        for start in range(0, len(X_tr), 400):
            chunk = slice(start, start + 400)
            clf.partial_fit(X_tr[chunk], y_tr[chunk], task_ids=t_tr[chunk], classes=classes)
        scores.append(clf.score(X_te, y_te, task_ids=t_te))
    assert scores[-1] > 0.8 and scores[-1] > scores[0]
    assert len(clf.net_.history) == 4 * int(np.ceil(len(X_tr) / 400))  # one epoch a call
    before = clf.predict_proba(X_te, task_ids=t_te)
    with pytest.raises(ValueError, match=r"labels \['maybe'\] that are not in its classes"):
        clf.partial_fit(X_tr[:2], np.array(["maybe", "3"]), task_ids=["high", "digit"])
    with pytest.raises(ValueError, match="tasks not seen in fit"):
        clf.partial_fit(X_tr[:2], y_tr[:2], task_ids=["digit", "colour"])
    with pytest.raises(ValueError, match="classes of task 'high' differ"):
        clf.partial_fit(X_tr[:2], y_tr[:2], task_ids=t_tr[:2],
                        classes={**classes, "high": ["n", "y"]})
    np.testing.assert_array_equal(clf.predict_proba(X_te, task_ids=t_te), before)


def test_partial_fit_reproducible(digits_multi_target):
    X_tr, X_te, Y_tr, _ = digits_multi_target
    classes = [np.arange(10), [0.0, 1.0], [0.0, 1.0]]
    preds = []
    for _ in range(2):
        clf = MultiTaskClassifier(**FAST)
        for _ in range(2):
            clf.partial_fit(X_tr, Y_tr, classes=classes)
        preds.append(clf.predict_proba(X_te)[0])
    np.testing.assert_array_equal(*preds)
