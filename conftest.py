"""Test configuration shared by the test suite (tests/) and the docstring examples
(sktransfer/, collected by ``--doctest-modules``)."""

import os

import pytest
import torch

# a script that the Accelerate tests launch, not a module to import for doctests
collect_ignore = ["tests/accelerate_worker.py"]

# One torch thread: the suite runs on small, shared machines.
torch.set_num_threads(1)
os.environ.setdefault("SKTRANSFER_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _no_global_config_leak():
    """Every test starts and ends with scikit-learn's default configuration."""
    import sklearn

    before = sklearn.get_config()
    yield
    sklearn.set_config(**before)
