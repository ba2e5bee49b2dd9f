"""Hyperparameter searches run in parallel on joblib's engines: loky and Dask.

The searches here are scikit-learn's own ``GridSearchCV`` with ``n_jobs`` (loky
processes) and under ``joblib.parallel_backend("dask")`` on a
``dask.distributed.LocalCluster`` started on loopback by this module. A
parallel search must find the same scores and best parameters as a
sequential one with the same ``random_state``, and a worker must not run
torch with more threads than its share of the cores.
"""

import os

import numpy as np
import pytest
import torch
from joblib import parallel_backend
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, KFold

from sktransfer import EWCContinualClassifier, MultiTaskClassifier
from sktransfer.base import _n_cpus, default_num_threads, torch_threads
from sktransfer.modules import MLP

N_WORKERS = 2


# ----------------------------------------------------------------- helpers
class ThreadRecordingMLP(MLP):
    """An MLP trunk that records the torch thread count seen while training.

    Module-level so that it pickles by reference into joblib and Dask workers.
    """

    def __init__(self):
        super().__init__(64, (16,))
        self.max_threads = 0

    def forward(self, X):
        if self.training:
            self.max_threads = max(self.max_threads, torch.get_num_threads())
        return super().forward(X)


def fit_threads(estimator, X, y):
    """Scorer: the largest torch thread count any module saw during ``fit``."""
    return max(getattr(m, "max_threads", 0) for m in estimator.net_.module_.modules())


def env_threads(estimator, X, y):
    """Scorer: ``SKTRANSFER_NUM_THREADS`` in the process that fitted (0 when unset)."""
    return float(os.environ.get("SKTRANSFER_NUM_THREADS", 0))


def worker_share():
    """The cores one of ``N_WORKERS`` workers may use on this machine."""
    return max(1, _n_cpus() // N_WORKERS)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X[:300] / 16).astype(np.float32)
    y = y[:300]
    # Two tasks in one table: digits 0-4 and digits 5-9, the task id in the last column.
    task = (y >= 5).astype(np.float32)
    return X, y, np.column_stack([X, task])


def multitask_search(n_jobs, module=None):
    est = MultiTaskClassifier(task_column=-1, module=module, hidden_layer_sizes=(16,),
                              max_epochs=3, batch_size=32, random_state=0)
    scoring = "accuracy"
    if module is not None:
        scoring = {"accuracy": "accuracy", "threads": fit_threads, "env": env_threads}
    return GridSearchCV(est, {"lr": [1e-3, 1e-2], "weighting": ["equal", "uncertainty"]},
                        cv=KFold(2), scoring=scoring, refit="accuracy", n_jobs=n_jobs)


def ewc_search(n_jobs):
    est = EWCContinualClassifier(hidden_layer_sizes=(16,), max_epochs=3, batch_size=32,
                                 random_state=0)
    return GridSearchCV(est, {"lr": [1e-3, 1e-2], "ewc_lambda": [1.0, 100.0]},
                        cv=KFold(2), n_jobs=n_jobs)


def assert_same_search(a, b):
    """Same accuracy of every candidate on every fold, same best parameters."""
    def scores(search):
        key = "accuracy" if isinstance(search.scoring, dict) else "score"
        return np.array([search.cv_results_[f"split{i}_test_{key}"] for i in range(2)])

    np.testing.assert_allclose(scores(a), scores(b), atol=1e-12)
    assert a.best_params_ == b.best_params_


@pytest.fixture(scope="module")
def sequential(digits):
    """The reference searches, run in this process."""
    X, y, Xt = digits
    return {"multitask": multitask_search(1).fit(Xt, y), "ewc": ewc_search(1).fit(X, y)}


@pytest.fixture(scope="module")
def dask_client():
    """A 2-process LocalCluster on loopback, without ``SKTRANSFER_NUM_THREADS``.

    The workers inherit this process's environment; removing the variable
    while they start leaves them on the package's default thread policy.
    """
    pytest.importorskip("dask", reason="dask is not installed (pip install 'dask[distributed]')")
    distributed = pytest.importorskip(
        "distributed", reason="dask.distributed is not installed (pip install 'dask[distributed]')")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SKTRANSFER_NUM_THREADS", raising=False)
        cluster = distributed.LocalCluster(n_workers=N_WORKERS, threads_per_worker=1,
                                           processes=True, host="127.0.0.1",
                                           dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


# ------------------------------------------------------------------- loky
def test_loky_search_matches_sequential(digits, sequential):
    X, y, Xt = digits
    # The recording trunk is the default trunk (same layers, same seeded initialisation).
    multitask = multitask_search(2, module=ThreadRecordingMLP).fit(Xt, y)
    assert_same_search(multitask, sequential["multitask"])
    assert_same_search(ewc_search(2).fit(X, y), sequential["ewc"])
    # Learning happened: the best candidate is far above chance (5 classes per task).
    assert sequential["multitask"].best_score_ > 0.4
    # No worker ran torch with more threads than its share of the cores.
    threads = multitask.cv_results_["mean_test_threads"]
    assert np.all(threads >= 1)
    assert np.all(threads <= worker_share()), (threads, worker_share())


def test_policy_within_a_joblib_worker_share(monkeypatch):
    """Without the variable, the policy never exceeds the limit joblib gives a worker."""
    monkeypatch.delenv("SKTRANSFER_NUM_THREADS", raising=False)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(worker_share())  # what loky's OMP_NUM_THREADS amounts to
        assert 1 <= default_num_threads() <= worker_share()
        torch.set_num_threads(1)  # what Dask's nanny sets (OMP_NUM_THREADS=1)
        assert default_num_threads() == 1
        with torch_threads():
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(old)


# ------------------------------------------------------------------- dask
def test_dask_search_matches_sequential(dask_client, digits, sequential):
    X, y, Xt = digits
    with parallel_backend("dask"):
        multitask = multitask_search(-1, module=ThreadRecordingMLP).fit(Xt, y)
        ewc = ewc_search(-1).fit(X, y)
    assert_same_search(multitask, sequential["multitask"])
    assert_same_search(ewc, sequential["ewc"])
    # The workers ran on the package's default thread policy (the variable is unset in
    # them), and no fit used more torch threads than the worker's share of the cores.
    assert np.all(multitask.cv_results_["mean_test_env"] == 0)
    threads = multitask.cv_results_["mean_test_threads"]
    assert np.all(threads >= 1)
    assert np.all(threads <= worker_share()), (threads, worker_share())


def test_dask_search_runs_on_the_workers(dask_client, digits):
    """The fits really ran in the worker processes, not in this one."""
    X, y, Xt = digits

    def pid_scorer(estimator, X, y):
        return float(os.getpid())

    est = MultiTaskClassifier(task_column=-1, hidden_layer_sizes=(8,), max_epochs=1,
                              random_state=0)
    search = GridSearchCV(est, {"lr": [1e-3, 1e-2]}, cv=KFold(2), scoring=pid_scorer,
                          refit=False)
    with parallel_backend("dask"):
        search.fit(Xt, y)
    worker_pids = set(dask_client.run(os.getpid).values())
    pids = {int(p) for i in range(2) for p in search.cv_results_[f"split{i}_test_score"]}
    assert pids <= worker_pids and os.getpid() not in pids
