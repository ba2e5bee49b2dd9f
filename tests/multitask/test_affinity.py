"""Task affinity (TAG lookahead), task grouping and TaskGroupedClassifier."""

import pickle
from itertools import combinations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits

from sktransfer.multitask import (
    MultiTaskClassifier,
    TaskAffinity,
    TaskGroupedClassifier,
    group_tasks,
    grouping_score,
    task_affinity,
)
from sktransfer.multitask._affinity import lookahead_affinity
from sktransfer.multitask._grouping import _greedy


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32)[:900], y[:900]


@pytest.fixture(scope="module")
def digit_tasks(digits):
    """Parity, parity again (a copy), "< 5", and random labels."""
    X, y = digits
    rng = np.random.RandomState(0)
    Y = np.column_stack([y % 2, y % 2, y < 5, rng.randint(2, size=len(y))]).astype(float)
    return X, Y


@pytest.fixture(scope="module")
def digit_affinity(digit_tasks):
    X, Y = digit_tasks
    return task_affinity(X, Y, random_state=0, max_epochs=5, lr=0.1)


# ------------------------------------------------------------------ affinity
def test_self_affinity_is_positive(digit_affinity):
    assert digit_affinity.shape == (4, 4)
    assert np.all(np.diag(digit_affinity) > 0)


def test_identical_tasks_with_identical_heads_have_the_self_affinity():
    """Closed form: a copy of task 0 with the same head is affected exactly as task 0."""
    rng = np.random.RandomState(0)
    X = rng.randn(64, 6).astype(np.float32)
    y0 = (X[:, 0] > 0).astype(np.int64)
    Y = np.column_stack([y0, y0, (X[:, 1] > 0).astype(np.int64)])
    clf = MultiTaskClassifier(hidden_layer_sizes=(16,), max_epochs=0, random_state=0).fit(X, Y)
    heads = clf.net_.module_.model.heads
    with torch.no_grad():
        heads.weight[1] = heads.weight[0]
        heads.bias[1] = heads.bias[0]
    batch = ({"X": torch.as_tensor(X)}, torch.as_tensor(Y))
    Z = lookahead_affinity(clf.net_, batch, lr=0.5)
    assert Z[0, 0] > 0
    np.testing.assert_allclose(Z[0, 1], Z[0, 0], rtol=1e-5)
    np.testing.assert_allclose(Z[1, 0], Z[1, 1], rtol=1e-5)
    np.testing.assert_allclose(Z[0], Z[1], rtol=1e-5, atol=1e-9)


def test_identical_tasks_are_the_most_affine(digit_affinity):
    # the twins' heads start from different random weights, so early steps that help
    # one head can hurt the other: the twin affinity approaches the self-affinity as
    # the heads align, and is far above every other task's
    A = digit_affinity
    for i, twin in ((0, 1), (1, 0)):
        others = [k for k in range(4) if k not in (i, twin)]
        assert A[i, twin] > 0.2 * A[i, i]
        assert all(A[i, twin] > 5 * abs(A[i, k]) for k in others)


def test_random_labels_are_not_positively_affine(digit_affinity):
    A = digit_affinity
    random_task = 3
    for real in (0, 2):
        # a step on the random labels does not lower a real task's loss (beyond noise),
        # and a real task's step does not lower the random task's loss
        assert A[random_task, real] < 0.05 * A[real, real]
        assert A[real, random_task] < 0.05 * A[random_task, random_task]


def test_regression_columns_via_task_types(digits):
    X, y = digits
    Y = np.column_stack([y % 2, y + 0.0, X[:, 20]])
    A = task_affinity(X[:300], Y[:300], random_state=0, max_epochs=2,
                      task_types=["classification", "regression", "regression"])
    assert A.shape == (3, 3) and np.all(np.diag(A) > 0)


def test_missing_labels_and_dataframe(digit_tasks):
    pd = pytest.importorskip("pandas")
    X, Y = digit_tasks
    Y = Y[:300].copy()
    Y[::2, 0] = np.nan
    A = task_affinity(X[:300], pd.DataFrame(Y, columns=list("abcd")), random_state=0,
                      max_epochs=1)
    assert A.shape == (4, 4) and np.isfinite(A).all()


def _dropout_trunk():
    return torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5))


@pytest.mark.parametrize("module", [None, _dropout_trunk], ids=["mlp", "dropout"])
def test_callback_leaves_training_unchanged(digit_tasks, module):
    X, Y = digit_tasks
    X, Y = X[:300], Y[:300]
    params = dict(module=module, hidden_layer_sizes=(16,), max_epochs=3, random_state=0)
    state = torch.random.get_rng_state()
    plain = MultiTaskClassifier(**params).fit(X, Y)
    cb = TaskAffinity(every=2)
    measured = MultiTaskClassifier(callbacks=[cb], **params).fit(X, Y)
    assert torch.equal(state, torch.random.get_rng_state())
    for a, b in zip(plain.predict_proba(X), measured.predict_proba(X)):
        np.testing.assert_array_equal(a, b)
    history = measured.net_.history[:, "train_task_affinity"]
    assert len(history) == 3 and np.asarray(history).shape == (3, 4, 4)
    assert cb.n_steps_ == 8  # 15 steps (5 batches of 64 per epoch), every second one
    assert cb.affinity_.shape == (4, 4)
    assert "train_task_affinity" not in plain.net_.history[-1]


def test_callback_keeps_the_epoch_table_readable(digit_tasks, capsys):
    X, Y = digit_tasks
    MultiTaskClassifier(hidden_layer_sizes=(8,), max_epochs=1, verbose=1,
                        callbacks=[TaskAffinity()]).fit(X[:100], Y[:100])
    out = capsys.readouterr().out
    assert "train_loss" in out and "affinity" not in out


def test_callback_in_the_task_format(digits):
    X, y = digits
    t = y % 3
    clf = MultiTaskClassifier(hidden_layer_sizes=(16,), max_epochs=2, random_state=0,
                              callbacks=[TaskAffinity()]).fit(X, y, task_ids=t)
    A = np.asarray(clf.net_.history[-1, "train_task_affinity"])
    assert A.shape == (3, 3) and np.all(np.diag(A) > 0)


def test_affinity_needs_shared_parameters(digit_tasks):
    X, Y = digit_tasks
    clf = MultiTaskClassifier(architecture="independent", max_epochs=1,
                              callbacks=[TaskAffinity()])
    with pytest.raises(ValueError, match="shares no parameter"):
        clf.fit(X[:100], Y[:100])


@pytest.mark.parametrize("bad, match", [
    (dict(Y=np.zeros(10)), "Y must be 2-D"),
    (dict(Y=np.zeros((9, 2))), "different numbers of rows"),
    (dict(Y=np.column_stack([np.zeros(10), np.full(10, np.nan)])), "column 1 of Y has no label"),
])
def test_bad_affinity_input(bad, match):
    X = np.zeros((10, 3))
    with pytest.raises(ValueError, match=match):
        task_affinity(X, bad["Y"])


def test_bad_callback_parameters():
    X, Y = np.random.RandomState(0).randn(20, 3), np.zeros((20, 2))
    Y[::2] = 1
    with pytest.raises(ValueError, match="every must be a positive integer"):
        MultiTaskClassifier(max_epochs=1, callbacks=[TaskAffinity(every=0)]).fit(X, Y)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        MultiTaskClassifier(max_epochs=1, callbacks=[TaskAffinity(lr=np.nan)]).fit(X, Y)


# ------------------------------------------------------------------ grouping
def _partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _partitions(rest):
        yield [[first], *part]
        for i in range(len(part)):
            yield part[:i] + [[first, *part[i]]] + part[i + 1:]


@pytest.mark.parametrize("seed", range(6))
def test_exact_search_matches_brute_force(seed):
    rng = np.random.RandomState(seed)
    T = 3 + seed % 4
    A = rng.randn(T, T)
    for n_groups in (None, 1, 2, 3):
        groups = group_tasks(affinity=A, n_groups=n_groups, method="exact")
        assert sorted(i for g in groups for i in g) == list(range(T))
        assert n_groups is None or len(groups) <= n_groups
        best = max(grouping_score(A, p) for p in _partitions(list(range(T)))
                   if n_groups is None or len(p) <= n_groups)
        assert grouping_score(A, groups) == pytest.approx(best, abs=1e-9)
        greedy = _greedy(A, n_groups)
        assert grouping_score(A, greedy) <= best + 1e-9
        assert n_groups is None or len(greedy) <= n_groups


def test_grouping_score_by_hand():
    A = np.array([[9.0, 0.5, -1.0], [0.3, 9.0, 2.0], [-1.0, 1.0, 9.0]])
    # {0, 1}: onto 0: A[1, 0] = 0.3, onto 1: A[0, 1] = 0.5; {2} alone: 0
    assert grouping_score(A, [[0, 1], [2]]) == pytest.approx(0.8)
    # {0, 1, 2}: onto 0 (0.3 - 1) / 2, onto 1 (0.5 + 1) / 2, onto 2 (-1 + 2) / 2
    assert grouping_score(A, [[0, 1, 2]]) == pytest.approx((-0.7 + 1.5 + 1.0) / 2)


def test_block_structure_is_recovered_by_both_searches():
    A = np.full((14, 14), -0.1)
    blocks = [list(range(0, 5)), list(range(5, 9)), list(range(9, 14))]
    for block in blocks:
        A[np.ix_(block, block)] = 0.5
    assert group_tasks(affinity=A, method="exact") == blocks
    assert group_tasks(affinity=A) == blocks  # auto: greedy above 12 tasks
    merged = group_tasks(affinity=A, n_groups=2)
    assert len(merged) == 2 and all(any(set(b) <= set(g) for g in merged) for b in blocks)


def test_ties_prefer_fewer_groups_and_harmful_tasks_stay_alone():
    assert group_tasks(affinity=np.zeros((3, 3))) == [[0, 1, 2]]
    A = np.array([[1.0, 0.2, -0.5], [0.2, 1.0, -0.5], [-0.5, -0.5, 1.0]])
    assert group_tasks(affinity=A) == [[0, 1], [2]]


def test_asymmetric_affinity_is_accepted():
    A = np.array([[1.0, 0.6], [-0.1, 1.0]])  # TAG's affinity is directional
    assert group_tasks(affinity=A) == [[0, 1]]  # 0.6 - 0.1 > 0
    assert group_tasks(affinity=A.T) == [[0, 1]]


def test_group_tasks_measures_the_affinity(digit_tasks):
    X, Y = digit_tasks
    groups = group_tasks(X, Y, random_state=0, lr=0.1)
    assert [0, 1] in [sorted(set(g) & {0, 1}) for g in groups]
    assert any(0 in g and 1 in g for g in groups)


@pytest.mark.parametrize("affinity, match", [
    (np.zeros((2, 3)), "square"),
    (np.zeros(3), "square"),
    (np.array([[0.0, np.inf], [0.0, 0.0]]), "infinite"),
])
def test_bad_affinity_matrix(affinity, match):
    with pytest.raises(ValueError, match=match):
        group_tasks(affinity=affinity)


def test_group_tasks_needs_data_or_affinity():
    with pytest.raises(ValueError, match="needs X and Y"):
        group_tasks()
    with pytest.raises(ValueError, match="at most 16 tasks"):
        group_tasks(affinity=np.zeros((17, 17)), method="exact")


# ------------------------------------------------- the grouped meta-estimator
_SMALL = MultiTaskClassifier(hidden_layer_sizes=(32,), max_epochs=10, lr=0.01)


def test_grouped_classifier_separates_the_random_task(digit_tasks):
    X, Y = digit_tasks
    clf = TaskGroupedClassifier(_SMALL, lookahead_lr=0.1, random_state=0).fit(X, Y)
    assert any(0 in g and 1 in g for g in clf.groups_)
    assert clf.affinity_.shape == (4, 4)
    assert sum(len(g) for g in clf.groups_) == 4 == clf.n_tasks_
    pred = clf.predict(X)
    assert pred.shape == Y.shape
    for k in (0, 1, 2):
        assert np.mean(pred[:, k] == Y[:, k]) > 0.85
    proba = clf.predict_proba(X)
    assert len(proba) == 4 and proba[0].shape == (len(X), 2)
    assert clf.score(X, Y) > 0.7


def test_grouped_classifier_task_format_and_given_groups(digits):
    X, y = digits
    t = np.array(["a", "b", "c"])[np.arange(len(y)) % 3]
    y = np.where(t == "a", y % 2, np.where(t == "b", y < 5, y % 3)).astype(int)
    clf = TaskGroupedClassifier(_SMALL, groups=[["a", "c"], ["b"]], random_state=0)
    clf.fit(X, y, task_ids=t)
    assert clf.affinity_ is None and clf.groups_ == [["a", "c"], ["b"]]
    assert len(clf.estimators_) == 2 and clf.estimators_[1].n_tasks_ == 1
    # as many steps as one network on all rows: 2/3 and 1/3 of the rows
    assert [e.max_epochs for e in clf.estimators_] == [15, 30]
    unscaled = clone(clf).set_params(scale_epochs=False, groups=[["a", "b", "c"]])
    assert unscaled.fit(X, y, task_ids=t).estimators_[0].max_epochs == 10
    assert clf.score(X, y, task_ids=t) > 0.85
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    proba = clf.predict_proba(X[:5], task_ids=t[:5])
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert proba[1, 2] == 0  # task "b" has labels 0 and 1 only
    with pytest.raises(ValueError, match="task_ids is required"):
        clf.predict(X)
    with pytest.raises(ValueError, match="not fitted on"):
        clf.predict(X[:2], task_ids=["a", "z"])


def test_grouped_classifier_searches_groups_in_the_task_format(digits):
    X, y = digits
    t = np.arange(len(y)) % 2
    rng = np.random.RandomState(0)
    y = np.where(t == 0, y % 2, rng.randint(2, size=len(y)))
    clf = TaskGroupedClassifier(_SMALL, affinity_epochs=2, random_state=0).fit(X, y, task_ids=t)
    assert clf.affinity_.shape == (2, 2)
    assert clf.predict(X[:4], task_ids=t[:4]).shape == (4,)


def test_grouped_classifier_one_task_is_the_estimator(digits):
    X, y = digits
    grouped = TaskGroupedClassifier(_SMALL, random_state=0).fit(X[:200], y[:200])
    assert grouped.groups_ == [[0]] and grouped.affinity_ is None
    assert grouped.predict(X[:5]).shape == (5,)
    np.testing.assert_array_equal(grouped.classes_, np.unique(y[:200]))


def test_grouped_classifier_clone_pickle_and_seed(digit_tasks):
    X, Y = digit_tasks
    X, Y = X[:300], Y[:300]
    clf = TaskGroupedClassifier(_SMALL, groups=[[0, 1], [2, 3]], random_state=3)
    assert clone(clf).get_params()["groups"] == [[0, 1], [2, 3]]
    fitted = clone(clf).fit(X, Y)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(fitted.predict(X), again.predict(X))
    for a, b in zip(fitted.predict_proba(X), clone(clf).fit(X, Y).predict_proba(X)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("groups, match", [
    ([[0, 1], [1, 2, 3]], "more than one group"),
    ([[0, 1], [2]], "in no group"),
    ([[0, 1, 2, 7], [3]], "not one of the tasks"),
    ([[0, 1, 2, 3], []], "empty group"),
])
def test_grouped_classifier_bad_groups(digit_tasks, groups, match):
    X, Y = digit_tasks
    with pytest.raises(ValueError, match=match):
        TaskGroupedClassifier(_SMALL, groups=groups).fit(X[:50], Y[:50])
    assert not hasattr(TaskGroupedClassifier(), "estimators_")


def test_grouped_classifier_checks_the_format(digit_tasks):
    X, Y = digit_tasks
    with pytest.raises(ValueError, match="task_column"):
        TaskGroupedClassifier(MultiTaskClassifier(task_column=0)).fit(X[:50], Y[:50, 0])
    with pytest.raises(ValueError, match="task_ids cannot be combined"):
        TaskGroupedClassifier(_SMALL).fit(X[:50], Y[:50], task_ids=np.zeros(50))
    with pytest.raises(ValueError, match="rows but X has"):
        TaskGroupedClassifier(_SMALL).fit(X[:50], Y[:40])


def test_pairs_are_all_measured(digit_affinity):
    assert all(np.isfinite(digit_affinity[i, j]) for i, j in combinations(range(4), 2))
