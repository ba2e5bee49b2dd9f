"""The allocator policy of the training sections (sktransfer/_allocator.py)."""

import resource
import sys
import threading

import pytest
import torch

from sktransfer import _allocator
from sktransfer._allocator import keep_freed_memory, malloc_tuning_active

glibc = pytest.mark.skipif(_allocator._glibc() is None, reason="glibc's malloc only")


def _faults_of_big_allocations(n=6, floats=8 << 20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        a = torch.ones(floats)  # 32 MB, written: every page is touched
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@glibc
def test_freed_memory_is_reused_instead_of_faulted_back_in(monkeypatch):
    monkeypatch.delenv("SKTRANSFER_TUNE_MALLOC", raising=False)
    for name in _allocator._USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    outside = _faults_of_big_allocations()
    with keep_freed_memory():
        assert malloc_tuning_active()
        _faults_of_big_allocations(1)  # the heap grows once ...
        inside = _faults_of_big_allocations()  # ... and is reused
    assert not malloc_tuning_active()
    assert inside < outside / 4, (inside, outside)


@glibc
def test_sections_nest_and_the_last_one_out_restores(monkeypatch):
    monkeypatch.delenv("SKTRANSFER_TUNE_MALLOC", raising=False)
    barrier = threading.Barrier(2)
    seen = []

    def work():
        with keep_freed_memory():
            barrier.wait()
            seen.append(malloc_tuning_active())
            barrier.wait()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with keep_freed_memory(), keep_freed_memory():
        assert _allocator._depth == 2
    assert seen == [True, True] and _allocator._depth == 0


@pytest.mark.parametrize("env", [("SKTRANSFER_TUNE_MALLOC", "0"),
                                 ("MALLOC_TRIM_THRESHOLD_", "1000000"),
                                 ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1000000")])
def test_the_users_own_malloc_settings_are_left_alone(monkeypatch, env):
    monkeypatch.setenv(*env)
    with keep_freed_memory():
        assert not malloc_tuning_active()


def test_a_fit_runs_inside_the_policy_on_glibc():
    from sklearn.datasets import load_digits
    from skorch.callbacks import Callback

    from sktransfer import MultiTaskClassifier

    seen = []

    class Probe(Callback):
        def on_epoch_end(self, net, **kwargs):
            seen.append(malloc_tuning_active())

    X, y = load_digits(return_X_y=True)
    MultiTaskClassifier(hidden_layer_sizes=(8,), max_epochs=1, callbacks=[Probe()],
                        random_state=0).fit(X[:100], y[:100])
    expected = _allocator._glibc() is not None and sys.platform.startswith("linux")
    assert seen == [expected] and not malloc_tuning_active()
