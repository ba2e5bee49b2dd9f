"""TimeBudget: a wall-clock budget that stops training without a rollback."""

import pickle
import time

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from skorch.callbacks import Callback

from sktransfer.callbacks import TimeBudget
from sktransfer.meta import PrototypicalClassifier
from sktransfer.multitask import MultiTaskClassifier


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


def _multitask_data():
    rng = np.random.RandomState(0)
    X = rng.randn(300, 5).astype(np.float32)
    t = rng.randint(2, size=300)
    y = np.where(t == 0, X[:, 0] > 0, X[:, 1] > 0).astype(int)
    return X, y, t


class _Slow(Callback):
    """A callback that makes every training batch take at least 20 ms."""

    def on_batch_end(self, net, training=True, **kwargs):
        time.sleep(0.02)


def test_stops_prototypical_within_an_epoch(digits):
    X, y = digits
    budget = TimeBudget(seconds=0.3)
    # one epoch of 10,000 episodes would take far longer than the budget
    proto = PrototypicalClassifier(max_epochs=5, episodes_per_epoch=10_000,
                                   callbacks=[_Slow(), budget], random_state=0)
    start = time.perf_counter()
    proto.fit(X[y < 5], y[y < 5])
    assert time.perf_counter() - start < 5
    assert budget.stopped_ is True
    assert 0.3 <= budget.elapsed_ < 3
    assert 1 <= budget.n_batches_ < 10_000
    history = proto.net_.history
    assert len(history) == 1                      # cut inside the first epoch
    assert history[-1, "time_budget_stopped"] is True
    assert history[-1, "time_budget_batches"] == budget.n_batches_
    assert history[-1, "time_budget_elapsed_s"] == pytest.approx(budget.elapsed_)
    assert np.isfinite(history[-1, "train_loss"])
    # the fitted model (not a rollback) predicts, and adapts
    assert proto.predict(X[:5]).shape == (5,)
    assert proto.adapt(X[y >= 5][:50], y[y >= 5][:50]).predict(X[:3]).shape == (3,)


def test_stops_multitask_and_keeps_what_it_trained():
    X, y, t = _multitask_data()
    budget = TimeBudget(seconds=0.2)
    clf = MultiTaskClassifier(max_epochs=10_000, batch_size=16,
                              callbacks=[_Slow(), budget], random_state=0)
    clf.fit(X, y, task_ids=t)
    assert budget.stopped_ is True
    assert len(clf.net_.history) < 10_000
    assert clf.net_.history[-1, "time_budget_stopped"] is True
    assert clf.predict(X[:4], task_ids=t[:4]).shape == (4,)


def test_a_stopped_partial_fit_keeps_its_training():
    X, y, t = _multitask_data()
    budget = TimeBudget(seconds=60)
    clf = MultiTaskClassifier(max_epochs=1, batch_size=16, callbacks=[_Slow(), budget],
                              random_state=0).fit(X, y, task_ids=t)
    assert budget.stopped_ is False
    before = [p.detach().clone() for p in clf.net_.module_.parameters()]
    n_rows = len(clf.net_.history)
    budget.seconds = 0.05          # the net's own callback: read when training begins
    clf.partial_fit(X, y, task_ids=t)
    assert budget.stopped_ is True
    assert budget.n_batches_ < 19                          # 300 rows, 16 a batch
    assert len(clf.net_.history) == n_rows + 1             # the cut epoch is kept
    after = list(clf.net_.module_.parameters())
    assert any(not np.allclose(a.detach(), b) for a, b in zip(after, before))


def test_not_stopped_when_the_budget_suffices(digits):
    X, y = digits
    budget = TimeBudget(minutes=10)
    proto = PrototypicalClassifier(max_epochs=2, episodes_per_epoch=5, callbacks=[budget],
                                   random_state=0).fit(X[y < 5], y[y < 5])
    assert budget.stopped_ is False
    assert budget.n_batches_ == 10
    assert proto.net_.history[:, "time_budget_stopped"] == [False, False]
    assert proto.net_.history[-1, "time_budget_batches"] == 10
    assert budget.budget_s_ == 600


def test_minutes_and_seconds_add_up():
    assert TimeBudget(minutes=0.5, seconds=3)._budget() == 33


def test_clone_and_pickle(digits):
    X, y = digits
    proto = PrototypicalClassifier(max_epochs=100, episodes_per_epoch=20,
                                   callbacks=[TimeBudget(seconds=0.2)], random_state=0)
    cloned = clone(proto)
    assert cloned.callbacks[0] is not proto.callbacks[0]
    assert cloned.callbacks[0].get_params() == {"minutes": None, "seconds": 0.2}
    proto.fit(X[y < 5], y[y < 5])
    again = pickle.loads(pickle.dumps(proto))
    np.testing.assert_array_equal(again.predict(X[:20]), proto.predict(X[:20]))
    # the unpickled callback trains again
    again.fit(X[y < 5], y[y < 5])
    assert again.callbacks[0].stopped_ in (True, False)


@pytest.mark.parametrize("kwargs, error", [
    ({}, ValueError),
    ({"seconds": 0}, ValueError),
    ({"minutes": -1}, ValueError),
    ({"seconds": float("nan")}, ValueError),
    ({"minutes": float("inf")}, ValueError),
    ({"seconds": "10"}, TypeError),
    ({"minutes": True}, TypeError),
])
def test_bad_values_raise(digits, kwargs, error):
    X, y = digits
    proto = PrototypicalClassifier(max_epochs=1, episodes_per_epoch=2,
                                   callbacks=[TimeBudget(**kwargs)], random_state=0)
    with pytest.raises(error, match="TimeBudget"):
        proto.fit(X[y < 5], y[y < 5])
    assert not hasattr(proto, "net_")


def _maml(cbs):
    from sktransfer.meta import MAMLClassifier

    return MAMLClassifier(n_way=3, max_epochs=10_000, episodes_per_epoch=50,
                          hidden_layer_sizes=(16,), callbacks=cbs, random_state=0)


def _ewc(cbs):
    from sktransfer.continual import EWCContinualClassifier

    return EWCContinualClassifier(scenario="domain", max_epochs=10_000, callbacks=cbs,
                                  random_state=0)


@pytest.mark.parametrize("make", [_maml, _ewc])
def test_other_families_stop(digits, make):
    X, y = digits
    budget = TimeBudget(seconds=0.1)
    est = make([_Slow(), budget])
    if "Continual" in type(est).__name__:
        from sktransfer.datasets import make_permuted_tasks

        Xs, ys, t = make_permuted_tasks(X[:400], y[:400], n_tasks=2, random_state=0)
        est.fit(Xs, ys, task_ids=t)          # each experience gets the budget
        assert est.n_tasks_ == 2
    else:
        est.fit(X[y < 5], y[y < 5])
    assert budget.stopped_ is True
    assert est.net_.history[-1, "time_budget_stopped"] is True
    assert est.predict(X[:3]).shape == (3,)
