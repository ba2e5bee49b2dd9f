"""Training through Hugging Face Accelerate (``accelerator=``): one process and data parallel.

In one process an accelerated fit must give the same model as a plain one
(same batches, same arithmetic). Data parallelism is checked in two CPU
processes started with ``accelerate launch`` (gloo): the averaged gradient of two
half batches is the gradient of the whole batch, so two processes on batch 32
must end where one process on batch 64 ends, and every process must hold
the same weights.
"""

import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits

from sktransfer import ContinualClassifier, EWCContinualClassifier, MultiTaskClassifier

accelerate = pytest.importorskip("accelerate", reason="accelerate is not installed")
NO_SHUFFLE = {"iterator_train__shuffle": False}


@pytest.fixture(scope="module")
def accelerator():
    # one Accelerator per process: its state (device, mixed precision) is global
    return accelerate.Accelerator(cpu=True)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    return X, y, np.stack([y % 2, (y > 4).astype(int)], axis=1)


def test_one_process_equals_the_plain_fit(accelerator, digits):
    X, _, Y = digits
    kwargs = dict(weighting="uncertainty", hidden_layer_sizes=(16,), max_epochs=3, lr=1e-2,
                  random_state=0, net_params=NO_SHUFFLE)
    plain = MultiTaskClassifier(**kwargs).fit(X[:600], Y[:600])
    acc = MultiTaskClassifier(accelerator=accelerator, **kwargs).fit(X[:600], Y[:600])
    assert type(acc.net_).__name__ == "AcceleratedMultiTaskNet"
    for (name, a), b in zip(plain.net_.module_.state_dict().items(),
                            acc.net_.module_.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    np.testing.assert_allclose(acc.predict_proba(X[600:700])[0],
                               plain.predict_proba(X[600:700])[0], atol=1e-5)
    assert acc.score(X[600:], Y[600:]) > 0.75


def test_continual_learns_every_task_and_pickles(accelerator, digits):
    X, y, _ = digits
    tasks = (y >= 5).astype(int)
    clf = EWCContinualClassifier(scenario="task", hidden_layer_sizes=(32,), max_epochs=6,
                                 lr=1e-2, random_state=0, accelerator=accelerator)
    clf.fit(X[:1400], y[:1400], task_ids=tasks[:1400])
    for k in (0, 1):  # both tasks remembered after the second
        mask = tasks[1400:] == k
        assert clf.score(X[1400:][mask], y[1400:][mask], task_ids=tasks[1400:][mask]) > 0.6
    with pytest.warns(Warning, match="device"):  # skorch: unpickled to the CPU
        restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict(X[:50], task_ids=tasks[:50]),
                                  clf.predict(X[:50], task_ids=tasks[:50]))
    clone(clf)  # the unfitted copy shares the accelerator's settings
    assert clone(clf).accelerator.device == accelerator.device


@pytest.mark.parametrize("strategy", ["naive", "ewc", "si", "lwf", "replay", "agem"])
def test_every_continual_strategy_equals_its_plain_fit(strategy, accelerator, digits):
    X, y, _ = digits
    tasks = (y[:400] >= 5).astype(int)
    kwargs = dict(strategy=strategy, scenario="task", hidden_layer_sizes=(16,), lr=1e-2,
                  max_epochs=3, random_state=0, net_params=NO_SHUFFLE)
    plain = ContinualClassifier(**kwargs).fit(X[:400], y[:400], task_ids=tasks)
    acc = ContinualClassifier(accelerator=accelerator, **kwargs)
    acc.fit(X[:400], y[:400], task_ids=tasks)
    score = acc.score(X[:400], y[:400], task_ids=tasks)
    if strategy in ("replay", "agem"):
        # they sample their memory from the torch RNG, whose stream the DataLoader
        # (which draws a base seed per epoch) shifts: same quality, other draws
        assert abs(score - plain.score(X[:400], y[:400], task_ids=tasks)) < 0.1
    else:
        np.testing.assert_allclose(acc.predict_proba(X[:100], task_ids=tasks[:100]),
                                   plain.predict_proba(X[:100], task_ids=tasks[:100]),
                                   atol=1e-4)
    assert score > 0.5


def test_bad_accelerator_settings_are_clear_errors(accelerator, digits):
    X, _, Y = digits
    with pytest.raises(TypeError, match="The 'accelerator' parameter of MultiTaskClassifier "
                       "must be None or an object implementing 'prepare'"):
        MultiTaskClassifier(max_epochs=1, accelerator="cuda").fit(X[:50], Y[:50])
    clf = MultiTaskClassifier(max_epochs=1, precision="bf16", accelerator=accelerator)
    with pytest.raises(ValueError, match="mixed precision is the Accelerator's"):
        clf.fit(X[:50], Y[:50])
    assert not hasattr(clf, "net_")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_average_gradients(tmp_path, digits):
    launcher = Path(sys.executable).with_name("accelerate")
    if not launcher.exists():
        pytest.skip("the accelerate launcher is not installed")
    X, _, Y = digits
    # the reference: one process, batch 64 = the two processes' batches of 32 together
    one = MultiTaskClassifier(weighting="uncertainty", hidden_layer_sizes=(16,), batch_size=64,
                              max_epochs=3, lr=1e-2, random_state=0,
                              net_params=NO_SHUFFLE).fit(X[:256], Y[:256])
    reference = tmp_path / "reference.pt"
    torch.save(one.net_.module_.state_dict(), reference)
    env = dict(os.environ, SKTRANSFER_REFERENCE=str(reference), ACCELERATE_USE_CPU="1",
               SKTRANSFER_NUM_THREADS="1", OMP_NUM_THREADS="1")
    worker = Path(__file__).with_name("accelerate_worker.py")
    # accelerate launch on CPUs: --multi_gpu starts the processes (through
    # torch.distributed), ACCELERATE_USE_CPU makes them CPU processes (gloo)
    cmd = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--main_process_port", str(_free_port()), "--mixed_precision", "no",
           "--dynamo_backend", "no", str(worker)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    assert out["processes"] == 2
    assert out["max_weight_diff"] < 1e-4
    assert out["predictions"] == 256  # every process predicts the whole input
    for strategy in ("multitask", "ewc", "si", "lwf", "replay", "agem"):
        assert out[f"same_{strategy}"], strategy
    for strategy in ("ewc", "si", "lwf", "replay", "agem"):
        # 5 classes per task (chance 0.2), 5 epochs of half the steps per process
        assert out[f"score_{strategy}"] > 0.4, strategy
    assert "cannot synchronise" in out["refused"] or "whole batch" in out["refused"]
