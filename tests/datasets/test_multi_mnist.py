"""make_multi_mnist builds a real two-task problem that a multi-task model learns."""

import os

import numpy as np
import pytest
import torch

from sktransfer import MultiTaskClassifier
from sktransfer.datasets import load_mnist, make_multi_mnist


@pytest.fixture(scope="module")
def mnist():
    home = os.environ.get("SKTRANSFER_DATA")
    if not home or not os.path.exists(os.path.join(home, "mnist", "t10k-images-idx3-ubyte.gz")):
        pytest.skip("MNIST files not found under SKTRANSFER_DATA")
    return load_mnist("test", data_home=home, download_if_missing=False, return_X_y=True)


def test_construction_keeps_both_digits():
    X = np.zeros((2, 1, 28, 28), dtype=np.float32)
    X[0, 0, :, :2] = 1.0  # a bar at the left edge
    X[1, 0, -2:, :] = 1.0  # a bar at the bottom edge
    Xm, Y = make_multi_mnist(X, np.array([3, 7]), n_samples=40, max_shift=0, random_state=0)
    assert Xm.shape == (40, 1, 28, 28) and Xm.dtype == np.float32
    assert set(np.unique(Y)) <= {3, 7}
    both = (Y[:, 0] == 3) & (Y[:, 1] == 7)
    img = Xm[np.argmax(both), 0]
    assert img[:, :2].mean() > 0.3 and img[-3:, :].mean() > 0.3  # left bar and bottom bar
    a, _ = make_multi_mnist(X, np.array([3, 7]), n_samples=5, random_state=1)
    b, _ = make_multi_mnist(X, np.array([3, 7]), n_samples=5, random_state=1)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_samples=0), "n_samples must be a positive int"),
    (dict(max_shift=9), r"max_shift must be in \[0, 4\]"),
])
def test_bad_arguments_raise_errors_naming_them(kwargs, match):
    X = np.zeros((3, 1, 28, 28))
    with pytest.raises(ValueError, match=match):
        make_multi_mnist(X, np.arange(3), **kwargs)
    with pytest.raises(ValueError, match="28x28 single-channel"):
        make_multi_mnist(np.zeros((3, 8, 8)), np.arange(3))


def lenet():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 10, 5), torch.nn.MaxPool2d(2), torch.nn.ReLU(),
        torch.nn.Conv2d(10, 20, 5), torch.nn.MaxPool2d(2), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(320, 50), torch.nn.ReLU())


def test_multitask_lenet_learns_both_digits(mnist):
    X, y = mnist
    X_tr, Y_tr = make_multi_mnist(X[:8000], y[:8000], n_samples=3000, random_state=0)
    X_te, Y_te = make_multi_mnist(X[8000:], y[8000:], n_samples=500, random_state=1)
    clf = MultiTaskClassifier(module=lenet, max_epochs=3, lr=3e-3, batch_size=64,
                              random_state=0).fit(X_tr, Y_tr)
    pred = clf.predict(X_te)
    for k in range(2):
        assert np.mean(pred[:, k] == Y_te[:, k]) > 0.4  # chance is 0.1
