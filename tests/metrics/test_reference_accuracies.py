"""sktransfer.metrics.reference_accuracies: the b_j of forward transfer."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from sktransfer.continual import ContinualClassifier
from sktransfer.datasets import make_split_tasks
from sktransfer.metrics import forward_transfer, reference_accuracies

N_TASKS = 3


@pytest.fixture(scope="module")
def split_digits():
    """Split digits in 3 tasks (classes 0-3, 4-6, 7-9), a train and a test part of each."""
    X, y = load_digits(return_X_y=True)
    rows = np.random.RandomState(0).permutation(len(y))[:900]
    Xs, ys, t = make_split_tasks((X[rows] / 16).astype(np.float32), y[rows], n_tasks=N_TASKS)
    test = np.arange(len(ys)) % 4 == 0
    eval_tasks = [(Xs[test & (t == k)], ys[test & (t == k)]) for k in range(N_TASKS)]
    return Xs[~test], ys[~test], t[~test], eval_tasks


def _clf(**params):
    # lr=0.01: three epochs are then enough to learn each small task well
    return ContinualClassifier(hidden_layer_sizes=(16,), max_epochs=3, lr=0.01, random_state=0,
                               **params)


def test_untrained_and_independent(split_digits):
    X, y, t, eval_tasks = split_digits
    clf = _clf()
    untrained = reference_accuracies(clf, X, y, t, eval_tasks)  # the default kind
    independent = reference_accuracies(clf, X, y, t, eval_tasks, kind="independent")
    for b in (untrained, independent):
        assert b.shape == (N_TASKS,) and b.dtype == float
        assert ((b >= 0) & (b <= 1)).all()
    # each task has 3 or 4 classes: an untrained network is at about chance level,
    # one trained on the task alone far above it
    chance = np.array([1 / len(np.unique(yj)) for _, yj in eval_tasks])
    assert (untrained < chance + 0.25).all()
    assert abs(untrained.mean() - chance.mean()) < 0.2
    assert (independent > 0.8).all() and (independent > untrained + 0.3).all()
    assert not hasattr(clf, "net_")  # the estimator itself is left unfitted
    np.testing.assert_array_equal(untrained, reference_accuracies(clf, X, y, t, eval_tasks))

    # the independent reference is the model fitted on the task alone
    rows = t == 1
    alone = _clf().fit(X[rows], y[rows], task_ids=t[rows])
    assert independent[1] == alone.score(*eval_tasks[1], task_ids=1)

    # both plug into forward_transfer
    R = clf.fit(X, y, task_ids=t, eval_tasks=eval_tasks).accuracy_matrix_
    fwt = forward_transfer(R, untrained)
    np.testing.assert_allclose(fwt, np.mean([R[j - 1, j] - untrained[j] for j in (1, 2)]))
    fwt_after = forward_transfer(R, independent, after_learning=True)
    assert -1 <= fwt_after <= 1


def test_task_scenario_and_other_estimators(split_digits):
    X, y, t, eval_tasks = split_digits
    # task ids that are names, in the task scenario (score needs task_ids)
    names = np.array(["a", "b", "c"])[t]
    b = reference_accuracies(_clf(scenario="task"), X, y, names, eval_tasks,
                             kind="independent")
    assert b.shape == (N_TASKS,) and (b > 0.8).all()
    # any scikit-learn classifier as the independent reference (no task_ids)
    b = reference_accuracies(LogisticRegression(max_iter=300), X, y, t, eval_tasks,
                             kind="independent")
    assert (b > 0.9).all()
    # one task when task_ids is None
    b = reference_accuracies(_clf(), X, y, None, [eval_tasks[0]], kind="untrained")
    assert b.shape == (1,)


def test_bad_kind_or_eval_tasks_raise_errors_naming_them(split_digits):
    X, y, t, eval_tasks = split_digits
    with pytest.raises(ValueError, match="kind must be one of"):
        reference_accuracies(_clf(), X, y, t, eval_tasks, kind="random")
    with pytest.raises(ValueError, match="3 tasks"):
        reference_accuracies(_clf(), X, y, t, eval_tasks[:2])
    with pytest.raises(ValueError, match=r"eval_tasks\[1\] must be an \(X, y\) pair"):
        reference_accuracies(_clf(), X, y, t, [eval_tasks[0], eval_tasks[1][0], eval_tasks[2]])
    with pytest.raises(ValueError, match="one task per sample"):
        reference_accuracies(_clf(), X, y, t[:10], eval_tasks)
    with pytest.raises(ValueError, match="max_epochs"):
        reference_accuracies(LogisticRegression(), X, y, t, eval_tasks, kind="untrained")
