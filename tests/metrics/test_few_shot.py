"""few_shot_score, the few-shot scorer and class-disjoint model selection."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, cross_val_score

from sktransfer.meta import PrototypicalClassifier
from sktransfer.metrics import few_shot_score, make_few_shot_scorer
from sktransfer.model_selection import ClassDisjointSplit, LeaveOneTaskOut


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


@pytest.fixture(scope="module")
def proto(data):
    X, y = data
    return PrototypicalClassifier(max_epochs=2, episodes_per_epoch=50,
                                  random_state=0).fit(X[y < 5], y[y < 5])


def test_few_shot_score_mean_ci_and_reproducibility(proto, data):
    X, y = data
    held = y >= 5
    mean, ci, accs = few_shot_score(proto, X[held], y[held], n_way=5, k_shot=1, n_query=5,
                                    n_episodes=30, random_state=0, return_accuracies=True)
    assert accs.shape == (30,)
    assert mean == pytest.approx(accs.mean())
    assert ci == pytest.approx(1.96 * accs.std(ddof=1) / np.sqrt(30))
    assert mean > 0.5  # chance 0.2
    again = few_shot_score(proto, X[held], y[held], n_way=5, k_shot=1, n_query=5,
                           n_episodes=30, random_state=0)
    assert again == (mean, ci)
    five = few_shot_score(proto, X[held], y[held], n_way=5, k_shot=5, n_query=5,
                          n_episodes=30, random_state=0)[0]
    assert five > mean  # more shots help


def test_few_shot_score_errors(proto, data):
    X, y = data
    held = y >= 5
    with pytest.raises(ValueError, match="n_way=6 is larger than the number of classes"):
        few_shot_score(proto, X[held], y[held], n_way=6)
    with pytest.raises(ValueError, match="k_shot \\+ n_query"):
        few_shot_score(proto, X[held][:60], y[held][:60], n_way=5, k_shot=10, n_query=10)
    with pytest.raises(TypeError, match="no adapt method"):
        few_shot_score(object(), X, y)
    with pytest.raises(ValueError, match="rows but y has"):
        few_shot_score(proto, X[:10], y[:11])


def test_class_disjoint_split():
    y = np.repeat(np.arange(10), 4)
    for train, test in ClassDisjointSplit(n_splits=4, test_size=0.3,
                                          random_state=0).split(y, y):
        assert not set(y[train]) & set(y[test])
        assert len(set(y[test])) == 3
    folds = [set(y[test]) for _, test in ClassDisjointSplit(5, shuffle=False).split(y, y)]
    assert set().union(*folds) == set(range(10))
    groups = y // 2
    for train, test in ClassDisjointSplit(3, random_state=0).split(y, y, groups):
        assert not set(groups[train]) & set(groups[test])
    with pytest.raises(ValueError, match="at least 2 classes"):
        next(ClassDisjointSplit().split(y, np.zeros(40)))
    assert ClassDisjointSplit(7).get_n_splits() == 7


def test_leave_one_task_out():
    t = np.array([0, 0, 1, 2, 2])
    tests = [test.tolist() for _, test in LeaveOneTaskOut().split(t, groups=t)]
    assert tests == [[0, 1], [2], [3, 4]]


def test_grid_search_selects_with_few_shot_scorer(data):
    X, y = data
    scorer = make_few_shot_scorer(n_way=3, k_shot=1, n_query=5, n_episodes=10)
    search = GridSearchCV(
        PrototypicalClassifier(max_epochs=1, episodes_per_epoch=20, random_state=0),
        {"lr": [1e-3, 1e-2]},
        scoring=scorer,
        cv=ClassDisjointSplit(n_splits=2, test_size=0.4, random_state=0),
    )
    search.fit(X, y)
    assert search.best_params_["lr"] in (1e-3, 1e-2)
    assert 0.33 < search.best_score_ <= 1
    scores = cross_val_score(PrototypicalClassifier(max_epochs=1, episodes_per_epoch=20,
                                                    random_state=0), X, y, scoring=scorer,
                             cv=ClassDisjointSplit(n_splits=2, test_size=0.4, random_state=1))
    assert scores.shape == (2,)
