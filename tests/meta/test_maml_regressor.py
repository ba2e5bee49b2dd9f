"""MAMLRegressor and make_sinusoid_tasks."""

import numpy as np
import pytest

from sktransfer.datasets import make_sinusoid_tasks
from sktransfer.meta import MAMLRegressor


def test_make_sinusoid_tasks_is_reproducible_and_checks_its_ranges():
    X, y, t, amp, phase = make_sinusoid_tasks(n_tasks=50, n_samples_per_task=7,
                                              return_params=True, random_state=0)
    assert X.shape == (350, 1) and y.shape == (350,) and X.dtype == np.float32
    assert np.all((X >= -5) & (X <= 5))
    assert np.all((amp >= 0.1) & (amp <= 5)) and np.all((phase >= 0) & (phase <= np.pi))
    np.testing.assert_allclose(y, amp[t] * np.sin(X[:, 0] - phase[t]), rtol=1e-5, atol=1e-5)
    again = make_sinusoid_tasks(n_tasks=50, n_samples_per_task=7, random_state=0)
    np.testing.assert_array_equal(again[1], y)
    with pytest.raises(ValueError, match="n_tasks"):
        make_sinusoid_tasks(n_tasks=0)
    with pytest.raises(ValueError, match="amplitude_range"):
        make_sinusoid_tasks(amplitude_range=(5, 1))


def _task_mse(model, n_tasks=30, k=10, seed=1):
    X, y, t = make_sinusoid_tasks(n_tasks=n_tasks, n_samples_per_task=k + 50,
                                  random_state=seed)
    errors = []
    for task in range(n_tasks):
        rows = np.flatnonzero(t == task)
        adapted = model.adapt(X[rows[:k]], y[rows[:k]])
        errors.append(np.mean((adapted.predict(X[rows[k:]]) - y[rows[k:]]) ** 2))
    return float(np.mean(errors))


@pytest.fixture(scope="module")
def sinusoid_model():
    X, y, t = make_sinusoid_tasks(n_tasks=500, n_samples_per_task=20, random_state=0)
    return MAMLRegressor(inner_lr=0.05, inner_steps_test=10, max_epochs=6,
                         episodes_per_epoch=500, lr=3e-3, random_state=0).fit(X, y, groups=t)


def test_adaptation_beats_the_unadapted_model(sinusoid_model):
    adapted = _task_mse(sinusoid_model)
    unadapted = _task_mse(sinusoid_model.set_params(inner_steps_test=0))
    sinusoid_model.set_params(inner_steps_test=10)
    assert adapted < 0.8 * unadapted, (adapted, unadapted)
    # auto on a CPU: 10 support + 10 query rows exceed the rule's 16 examples per task
    assert sinusoid_model.task_batching_ == "loop"
    assert "20 examples per task > 16" in sinusoid_model.task_batching_reason_


def test_adapt_leaves_the_model_unchanged_and_bad_targets_raise(sinusoid_model):
    before = sinusoid_model.predict(np.zeros((3, 1)))
    sinusoid_model.adapt(np.array([[0.0], [1.0]]), [3.0, 4.0])
    np.testing.assert_array_equal(sinusoid_model.predict(np.zeros((3, 1))), before)
    with pytest.raises(ValueError, match="numeric"):
        sinusoid_model.adapt(np.zeros((2, 1)), ["a", "b"])
    with pytest.raises(ValueError, match="n_samples = 1"):
        MAMLRegressor().fit(np.zeros((3, 1)), [1.0, 2.0, 3.0], groups=[0, 1, 1])


def test_small_tasks_shrink_episodes():
    X, y, t = make_sinusoid_tasks(n_tasks=20, n_samples_per_task=6, random_state=0)
    model = MAMLRegressor(k_shot=10, n_query=10, max_epochs=1, episodes_per_epoch=10,
                          random_state=0).fit(X, y, groups=t)
    assert model.k_shot_ + model.n_query_ == 6
    assert model.predict(X[:5]).shape == (5,)
