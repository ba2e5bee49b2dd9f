"""Wall time of a GridSearchCV over MultiTaskClassifier: 1 process, 2 loky workers, 2 Dask workers.

The search is 8 candidates (learning rate x weighting x trunk width) times 3
folds of a two-task MultiTaskClassifier on scikit-learn's digits (task 0:
which digit; task 1: which digit modulo 3, the task id in the last column of
``X``). It runs

* sequentially (``n_jobs=1``);
* with ``n_jobs=2`` on joblib's default loky backend;
* under ``joblib.parallel_backend("dask")`` on a
  ``dask.distributed.LocalCluster(n_workers=2, threads_per_worker=1)``
  started on loopback (skipped when dask is not installed).

Every configuration runs ``--repeats`` times, alternating, so machine noise
hits all of them. The first parallel run includes starting the workers
(importing torch in each); the table reports the first run, the fastest run
and the speed-up of the fastest run over the fastest sequential run, and
checks that every backend found the same scores as the sequential search.
The cluster's own start-up time is printed separately.

Run ``python benchmarks/bench_search_scaling.py`` (``--quick`` for a short
run with fewer epochs).
"""

import argparse
import logging
import os
import time

os.environ.setdefault("SKTRANSFER_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from joblib import parallel_backend  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold  # noqa: E402

from sktransfer import MultiTaskClassifier  # noqa: E402
from sktransfer.base import _n_cpus  # noqa: E402

GRID = {"lr": [1e-3, 3e-3], "weighting": ["equal", "uncertainty"],
        "hidden_layer_sizes": [(64,), (128,)]}


def make_problem():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    task = np.arange(len(y)) % 2
    y = np.where(task == 0, y, y % 3)
    return np.column_stack([X, task.astype(np.float32)]), y


def run_search(X, y, n_jobs, epochs):
    est = MultiTaskClassifier(task_column=-1, max_epochs=epochs, batch_size=64, random_state=0)
    search = GridSearchCV(est, GRID, cv=KFold(3, shuffle=True, random_state=0), n_jobs=n_jobs,
                          refit=False)
    start = time.perf_counter()
    search.fit(X, y)
    return time.perf_counter() - start, search.cv_results_["mean_test_score"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs, one repeat")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    epochs = 5 if args.quick else 20
    repeats = args.repeats or (1 if args.quick else 3)
    X, y = make_problem()
    n_fits = int(np.prod([len(v) for v in GRID.values()])) * 3

    configs = {"n_jobs=1": ("loky", 1), "n_jobs=2 (loky)": ("loky", 2)}
    client = cluster = None
    try:
        import distributed

        start = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None)
        client = distributed.Client(cluster)
        cluster_start = time.perf_counter() - start
        configs["dask, 2 workers"] = ("dask", -1)
    except ImportError:
        cluster_start = None
        print("dask.distributed is not installed: the Dask row is skipped "
              "(pip install 'dask[distributed]')")

    print(f"GridSearchCV: {n_fits // 3} candidates x 3 folds = {n_fits} fits of "
          f"MultiTaskClassifier ({epochs} epochs, {len(y)} digits, 2 tasks); "
          f"{_n_cpus()} CPU cores visible, load average {os.getloadavg()[0]:.2f}, "
          f"SKTRANSFER_NUM_THREADS={os.environ['SKTRANSFER_NUM_THREADS']}")
    times = {name: [] for name in configs}
    scores = {}
    try:
        for _ in range(repeats):
            for name, (backend, n_jobs) in configs.items():
                with parallel_backend(backend):
                    seconds, score = run_search(X, y, n_jobs, epochs)
                times[name].append(seconds)
                scores[name] = score
    finally:
        if client is not None:
            # Workers busy tearing torch down are killed after a grace period; that is expected.
            logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
            client.close()
            cluster.close()

    base = min(times["n_jobs=1"])
    print(f"\n{'configuration':<18}{'first s':>9}{'best s':>9}{'speed-up':>10}"
          f"{'max |score diff|':>18}")
    for name in configs:
        diff = float(np.max(np.abs(scores[name] - scores["n_jobs=1"])))
        print(f"{name:<18}{times[name][0]:>9.1f}{min(times[name]):>9.1f}"
              f"{base / min(times[name]):>9.2f}x{diff:>18.1e}")
    if cluster_start is not None:
        print(f"\nLocalCluster(n_workers=2) start-up: {cluster_start:.1f} s (not in the table)")
    print(f"load average after: {os.getloadavg()[0]:.2f}; best mean accuracy "
          f"{scores['n_jobs=1'].max():.3f}")


if __name__ == "__main__":
    main()
