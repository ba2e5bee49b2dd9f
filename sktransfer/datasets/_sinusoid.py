"""Sinusoid regression tasks, the toy problem of MAML (Finn et al., 2017)."""

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import validate_params

from ._validation import InvalidParameterError, non_negative_real, positive_int

__all__ = ["make_sinusoid_tasks"]


def _check_range(bounds, name):
    """A finite ``(low, high)`` pair of real numbers with ``low <= high``."""
    if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__"):
        raise InvalidParameterError(
            f"{name} must be a (low, high) pair of numbers, got {bounds!r}"
        )
    if len(bounds) != 2:
        raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {bounds!r}")
    try:
        values = np.asarray(bounds)
    except ValueError:  # ragged
        values = np.asarray(bounds, dtype=object)
    if values.shape != (2,) or values.dtype.kind not in "iuf":
        raise InvalidParameterError(
            f"{name} must be a (low, high) pair of numbers, got {bounds!r}"
        )
    low, high = (float(v) for v in values)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{name} must be a pair of finite numbers (no NaN or inf), "
                         f"got {bounds!r}")
    if not low <= high:
        raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {bounds!r}")


@validate_params(
    {
        "n_tasks": [positive_int()],
        "n_samples_per_task": [positive_int()],
        "noise": [non_negative_real()],
        "return_params": ["boolean"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_sinusoid_tasks(n_tasks=100, n_samples_per_task=20, *, amplitude_range=(0.1, 5.0),
                        phase_range=(0.0, np.pi), x_range=(-5.0, 5.0), noise=0.0,
                        return_params=False, random_state=None):
    """Regression tasks ``y = A sin(x - phi)``, one amplitude and phase per task.

    As in the MAML paper: amplitude ``A ~ U[0.1, 5]``, phase ``phi ~ U[0, pi]``
    and inputs ``x ~ U[-5, 5]``. Rows of one task share a task id, to be
    passed as ``groups`` to :class:`sktransfer.meta.MAMLRegressor`.

    Parameters
    ----------
    n_tasks : int, default=100
    n_samples_per_task : int, default=20
    amplitude_range, phase_range, x_range : tuple of float
        Bounds ``(low, high)`` of the uniform distributions, finite with ``low <= high``.
    noise : float, default=0.0
        Standard deviation of Gaussian noise added to ``y`` (finite, >= 0).
    return_params : bool, default=False
        Also return each task's amplitude and phase.
    random_state : int, RandomState or None, default=None

    Returns
    -------
    X : ndarray of shape (n_tasks * n_samples_per_task, 1), float32
    y : ndarray of shape (n_tasks * n_samples_per_task,), float32
    task_ids : ndarray of shape (n_tasks * n_samples_per_task,)
        ``0 .. n_tasks - 1``, ``n_samples_per_task`` consecutive rows each.
    amplitudes, phases : ndarray of shape (n_tasks,)
        Only with ``return_params=True``.

    Examples
    --------
    >>> from sktransfer.datasets import make_sinusoid_tasks
    >>> X, y, t = make_sinusoid_tasks(n_tasks=3, n_samples_per_task=5, random_state=0)
    >>> X.shape, y.shape, t.tolist()
    ((15, 1), (15,), [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    """
    for name, bounds in (("amplitude_range", amplitude_range), ("phase_range", phase_range),
                         ("x_range", x_range)):
        _check_range(bounds, name)
    rng = check_random_state(random_state)
    amplitudes = rng.uniform(*amplitude_range, size=n_tasks)
    phases = rng.uniform(*phase_range, size=n_tasks)
    x = rng.uniform(*x_range, size=(n_tasks, n_samples_per_task))
    y = amplitudes[:, None] * np.sin(x - phases[:, None])
    if noise:
        y = y + noise * rng.standard_normal(y.shape)
    X = x.reshape(-1, 1).astype(np.float32)
    y = y.reshape(-1).astype(np.float32)
    task_ids = np.repeat(np.arange(n_tasks), n_samples_per_task)
    if return_params:
        return X, y, task_ids, amplitudes, phases
    return X, y, task_ids
