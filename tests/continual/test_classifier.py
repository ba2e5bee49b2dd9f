"""ContinualClassifier, EWCContinualClassifier and ProgressiveNetworkClassifier: API."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from sktransfer.continual import (
    AGEM,
    EWC,
    ContinualClassifier,
    EWCContinualClassifier,
    JointTraining,
    LwF,
    Naive,
    ProgressiveNetworkClassifier,
    Replay,
    ReservoirBuffer,
    SynapticIntelligence,
)
from sktransfer.datasets import make_split_tasks

FAST = dict(hidden_layer_sizes=(32,), max_epochs=3, lr=0.01, batch_size=32, random_state=0)


@pytest.fixture(scope="module")
def split():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    rng = np.random.RandomState(0)
    idx = rng.permutation(len(y))[:900]
    return make_split_tasks(X[idx], y[idx], n_tasks=3, classes=[[0, 1, 2], [3, 4, 5],
                                                                 [6, 7, 8, 9]])


def _state(clf):
    return {k: v.detach().clone() for k, v in clf.net_.module_.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


ALL = ["naive", "joint", "ewc", "online_ewc", "si", "lwf", "replay", "agem",
       [EWC(ewc_lambda=10.0), Replay(memory_size=50)], [SynapticIntelligence(), LwF()]]


@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
@pytest.mark.parametrize("strategy", ALL, ids=lambda s: repr(s)[:30])
def test_every_strategy_in_every_scenario(split, strategy, scenario):
    X, y, t = split
    if scenario == "domain":  # the domain form of split tasks: labels within the task
        X, y, t = make_split_tasks(X, y, classes=[[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]],
                                   relabel=True)
    clf = ContinualClassifier(strategy=strategy, scenario=scenario, **FAST)
    clf.fit(X, y, task_ids=t)
    assert clf.n_tasks_ == 3 and clf.tasks_ == [0, 1, 2]
    last = t == 2
    tid = 2 if scenario == "task" else None
    assert clf.score(X[last], y[last], task_ids=tid) > 0.45  # chance: 0.25
    proba = clf.predict_proba(X[:5], task_ids=0 if scenario == "task" else None)
    assert proba.shape == (5, len(np.unique(y)))
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    if scenario == "task":  # task 0's head only answers task 0's classes
        assert np.all(proba[:, 3:] == 0)


def test_class_scenario_masks_unseen_classes(split):
    X, y, t = split
    clf = ContinualClassifier(**FAST)
    clf.partial_fit(X[t == 0], y[t == 0], classes=np.arange(10))
    proba = clf.predict_proba(X)
    assert np.all(proba[:, 3:] == 0)
    assert set(np.unique(clf.predict(X))) <= {0, 1, 2}


def test_partial_fit_equals_fit(split):
    X, y, t = split
    a = ContinualClassifier(strategy="ewc", **FAST).fit(X, y, task_ids=t)
    b = ContinualClassifier(strategy="ewc", **FAST)
    for k in range(3):
        b.partial_fit(X[t == k], y[t == k], classes=np.arange(10) if k == 0 else None)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_partial_fit_fills_the_accuracy_matrix_as_tasks_arrive(split, scenario):
    X, y, t = split
    tests = [(X[t == k], y[t == k]) for k in range(3)]
    a = ContinualClassifier(strategy="replay", scenario=scenario, **FAST)
    a.fit(X, y, task_ids=t, eval_tasks=tests)
    b = ContinualClassifier(strategy="replay", scenario=scenario, **FAST)
    for k in range(3):
        b.partial_fit(X[t == k], y[t == k], classes=np.arange(10) if k == 0 else None,
                      task_id=k, eval_tasks=tests)
        assert b.accuracy_matrix_.shape == (k + 1, 3)
    np.testing.assert_allclose(a.accuracy_matrix_, b.accuracy_matrix_, atol=1e-6)
    if scenario == "task":
        assert np.isnan(b.accuracy_matrix_[0, 1:]).all()
    assert b.accuracy_matrix_[2, 2] > 0.5
    with pytest.raises(ValueError, match="eval_tasks has 2 test sets but accuracy_matrix_ "
                                         "has 3 columns"):
        b.partial_fit(X[t == 0], y[t == 0], task_id=0, eval_tasks=tests[:2])
    assert b.accuracy_matrix_.shape == (3, 3)
    with pytest.raises(ValueError, match="list of \\(X, y\\) pairs"):
        b.partial_fit(X[t == 0], y[t == 0], task_id=0, eval_tasks=tests[0])


def test_reproducible_and_fit_resets(split):
    X, y, t = split
    a = EWCContinualClassifier(**FAST).fit(X, y, task_ids=t)
    b = EWCContinualClassifier(**FAST).fit(X, y, task_ids=t)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    before = torch.get_rng_state()
    a.fit(X, y, task_ids=t)  # fit again: starts from scratch
    assert torch.equal(before, torch.get_rng_state())
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.n_tasks_ == 3


def test_clone_keeps_strategies_and_unpickled_model_predicts_and_keeps_learning(split):
    X, y, t = split
    clf = ContinualClassifier(strategy=[EWC(), Replay(memory_size=30)], **FAST)
    assert clone(clf).get_params()["strategy"][1].memory_size == 30
    clf.fit(X, y, task_ids=t)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(X), clf.predict(X))
    again.partial_fit(X[t == 0], y[t == 0])  # keeps learning after unpickling
    assert again.n_tasks_ == 4


def test_bad_input_leaves_model_unchanged(split):
    X, y, t = split
    clf = EWCContinualClassifier(scenario="task", **FAST)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X[t == 0], y[t == 0], task_id=0)
    assert not hasattr(clf, "net_")
    clf.partial_fit(X[t == 0], y[t == 0], classes=np.arange(10), task_id="a")
    state, attrs = _state(clf), dict(vars(clf))
    with pytest.raises(ValueError, match=r"labels \[10\] that are not in classes"):
        clf.partial_fit(X[t == 1], np.where(y[t == 1] == 3, 10, y[t == 1]), task_id="b")
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[t == 1][:, :-1], y[t == 1], task_id="b")
    with pytest.raises(ValueError, match="differs from the classes"):
        clf.partial_fit(X[t == 1], y[t == 1], classes=np.arange(5), task_id="b")
    clf.partial_fit(X[t == 1], y[t == 1], task_id="b")
    state, attrs = _state(clf), dict(vars(clf))
    with pytest.raises(ValueError, match="task_id is required"):
        clf.partial_fit(X[t == 2], y[t == 2])
    with pytest.raises(ValueError, match="task_ids is required"):
        clf.predict(X)
    with pytest.raises(ValueError, match="unknown task id"):
        clf.predict(X, task_ids="z")
    assert _same_state(state, _state(clf))
    assert vars(clf).keys() == attrs.keys() and clf.tasks_ == ["a", "b"]
    assert clf.predict(X[:3], task_ids=["a", "b", "a"]).shape == (3,)


def test_bad_parameters_raise_errors_naming_them(split):
    X, y, t = split
    for clf, match in [
        (ContinualClassifier(strategy="magic"), "The 'strategy' parameter of ContinualClassifier "
         "must be a str among"),
        (ContinualClassifier(strategy=[]), "empty"),
        (ContinualClassifier(scenario="online"), "scenario"),
        (EWCContinualClassifier(fisher="diag"), "fisher"),
        (EWCContinualClassifier(ewc_lambda=-1), "ewc_lambda"),
        (EWCContinualClassifier(gamma=1.5), "gamma"),
        (EWCContinualClassifier(memory_size=-3), "memory_size"),
        (ContinualClassifier(strategy=Replay(memory_size=0)), "memory_size"),
        (ContinualClassifier(strategy=LwF(temperature=0)), "temperature"),
        (ContinualClassifier(strategy=AGEM(sample_size=0)), "sample_size"),
    ]:
        with pytest.raises(ValueError, match=match):
            clf.fit(X, y, task_ids=t)
        assert not hasattr(clf, "net_")
    with pytest.raises(ValueError, match="eval_tasks"):
        ContinualClassifier(**FAST).fit(X, y, task_ids=t, eval_tasks=[(X, y)])


def test_accuracy_matrix_diagonal_learned_and_unseen_tasks_masked_or_nan(split):
    X, y, t = split
    ev = [(X[t == k], y[t == k]) for k in range(3)]
    clf = ContinualClassifier(strategy="naive", **FAST).fit(X, y, task_ids=t, eval_tasks=ev)
    R = clf.accuracy_matrix_
    assert R.shape == (3, 3)
    assert np.all(np.diag(R) > 0.8)
    assert np.all(R[np.triu_indices(3, 1)] == 0)  # class scenario: unseen classes masked
    clf = ContinualClassifier(scenario="task", **FAST).fit(X, y, task_ids=t, eval_tasks=ev)
    assert np.isnan(clf.accuracy_matrix_[0, 1]) and not np.isnan(clf.accuracy_matrix_[2, 0])


def test_grid_search_over_strategies(split):
    X, y, t = split
    last = t == 2  # a plain single-task search, as scikit-learn would run it
    grid = GridSearchCV(ContinualClassifier(**FAST),
                        {"strategy": [Naive(), EWC(ewc_lambda=1.0)]}, cv=2)
    grid.fit(X[last], y[last])
    assert len(grid.cv_results_["params"]) == 2
    grid = GridSearchCV(ContinualClassifier(strategy=EWC(), **FAST),
                        {"strategy__ewc_lambda": [1.0, 100.0]}, cv=2).fit(X[last], y[last])
    assert grid.best_params_["strategy__ewc_lambda"] in (1.0, 100.0)
    grid = GridSearchCV(EWCContinualClassifier(**FAST), {"ewc_lambda": [1.0, 10.0]}, cv=2)
    assert grid.fit(X[last], y[last]).best_score_ > 0.5


def test_pipeline_with_task_ids(split):
    import sklearn

    X, y, t = split
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(MinMaxScaler(), ContinualClassifier(strategy="replay", **FAST))
        pipe.fit(X, y, task_ids=t)
        assert pipe.score(X, y) > 0.3
        assert pipe[-1].n_tasks_ == 3


def test_ewc_penalty_recorded_and_fisher_kinds(split):
    X, y, t = split
    for kind in ["exact", "sampled", "empirical", "batched"]:
        clf = EWCContinualClassifier(fisher=kind, ewc_lambda=10.0, fisher_n_samples=50, **FAST)
        clf.fit(X, y, task_ids=t)
        pen = clf.net_.history[:, "train_penalty"]
        assert pen[0] == 0 and max(pen) > 0


def test_strongly_regularised_ewc_keeps_weights(split):
    X, y, t = split
    clf = EWCContinualClassifier(ewc_lambda=1e6, scenario="domain", **FAST)
    clf.partial_fit(X[t == 0], y[t == 0], classes=np.arange(10))
    p0 = clf.predict_proba(X[t == 0])
    clf.partial_fit(X[t == 1], y[t == 1])
    naive = ContinualClassifier(scenario="domain", **FAST)
    naive.partial_fit(X[t == 0], y[t == 0], classes=np.arange(10))
    naive.partial_fit(X[t == 1], y[t == 1])
    drift_ewc = np.abs(clf.predict_proba(X[t == 0]) - p0).mean()
    drift_naive = np.abs(naive.predict_proba(X[t == 0]) - p0).mean()
    assert drift_ewc < 0.3 * drift_naive


def test_progressive_network_never_forgets(split):
    X, y, t = split
    clf = ProgressiveNetworkClassifier(**FAST)
    clf.partial_fit(X[t == 0], y[t == 0], classes=np.arange(10), task_id=0)
    p0 = clf.predict_proba(X[t == 0], task_ids=0)
    clf.partial_fit(X[t == 1], y[t == 1], task_id=1)
    clf.partial_fit(X[t == 2], y[t == 2], task_id=2)
    np.testing.assert_array_equal(clf.predict_proba(X[t == 0], task_ids=0), p0)
    assert len(clf.net_.module_.columns) == 3
    assert clf.score(X, y, task_ids=t) > 0.9
    col = clf.net_.module_.columns[2]
    assert len(col.lateral[0]) == 2  # lateral links from both earlier columns
    with pytest.raises(ValueError, match="task_ids is required"):
        clf.predict(X)


def test_reservoir_buffer_is_uniform():
    torch.manual_seed(0)
    counts = np.zeros(100)
    for _ in range(300):
        buf = ReservoirBuffer(10)
        for start in range(0, 100, 25):  # four "tasks"
            idx = torch.arange(start, start + 25)
            buf.add(idx[:, None].float(), idx, torch.zeros(25, dtype=torch.long))
        assert buf.size == 10 and buf.n_seen == 100
        assert len(set(buf.y.tolist())) == 10
        counts[buf.y.numpy()] += 1
    # every sample kept with probability 10 / 100
    per_task = counts.reshape(4, 25).sum(1) / 300
    np.testing.assert_allclose(per_task, 2.5, atol=0.4)


def test_joint_training_sees_all_data(split):
    X, y, t = split
    clf = ContinualClassifier(strategy=JointTraining(), **FAST).fit(X, y, task_ids=t)
    assert clf.score(X, y) > 0.85


def test_unpickled_net_shares_parameters(split):
    X, y, t = split
    clf = ContinualClassifier(strategy=[SynapticIntelligence(), AGEM(memory_size=30)], **FAST)
    clf.fit(X, y, task_ids=t)
    again = pickle.loads(pickle.dumps(clf))
    module_params = list(again.net_.module_.parameters())
    assert all(any(p is q for q in module_params) for p in again.net_.params)
