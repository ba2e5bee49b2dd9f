"""Continual-learning metrics and the task-sequence generators."""

import numpy as np
import pytest

from sktransfer.datasets import make_permuted_tasks, make_rotated_tasks, make_split_tasks
from sktransfer.metrics import average_accuracy, backward_transfer, forgetting, forward_transfer

R = np.array([[0.90, 0.20, 0.10],
              [0.70, 0.85, 0.15],
              [0.60, 0.80, 0.95]])


def test_average_accuracy_is_the_mean_of_the_last_row():
    assert average_accuracy(R) == pytest.approx((0.60 + 0.80 + 0.95) / 3)


def test_backward_transfer_divides_by_T_minus_1():
    expected = ((0.60 - 0.90) + (0.80 - 0.85)) / 2  # not / 3 as in GEM's code
    assert backward_transfer(R) == pytest.approx(expected)


def test_forward_transfer_against_reference_before_and_after_learning():
    b = np.array([0.1, 0.1, 0.1])
    assert forward_transfer(R, b) == pytest.approx(((0.20 - 0.1) + (0.15 - 0.1)) / 2)
    scratch = np.array([0.9, 0.8, 0.9])
    assert forward_transfer(R, scratch, after_learning=True) == pytest.approx(
        ((0.85 - 0.8) + (0.95 - 0.9)) / 2)


def test_forgetting_uses_best_earlier_accuracy():
    # task 0: best 0.90 (l=0), now 0.60 -> 0.30; task 1: best 0.85, now 0.80 -> 0.05
    assert forgetting(R) == pytest.approx((0.30 + 0.05) / 2)
    R2 = np.array([[0.5, 0.0, 0.0], [0.9, 0.8, 0.0], [0.7, 0.8, 0.9]])
    assert forgetting(R2) == pytest.approx(((0.9 - 0.7) + 0.0) / 2)
    assert backward_transfer(R2) == pytest.approx(((0.7 - 0.5) + 0.0) / 2)


def test_no_forgetting_when_nothing_changes():
    R3 = np.tril(np.full((4, 4), 0.9))
    assert forgetting(R3) == 0 and backward_transfer(R3) == 0
    assert average_accuracy(R3) == pytest.approx(0.9)


def test_bad_matrices_raise_errors_and_nan_above_the_diagonal_is_ignored():
    with pytest.raises(ValueError, match="square"):
        average_accuracy(np.zeros((2, 3)))
    for fn in (backward_transfer, forgetting):
        with pytest.raises(ValueError, match="at least 2"):
            fn([[0.9]])
    with pytest.raises(ValueError, match="one accuracy per task"):
        forward_transfer(R, [0.1, 0.1])
    nan_upper = np.where(np.triu(np.ones((3, 3)), 1) > 0, np.nan, R)
    assert backward_transfer(nan_upper) == pytest.approx(backward_transfer(R))
    with pytest.raises(ValueError, match="NaN"):
        forward_transfer(nan_upper, [0.1] * 3)
    with pytest.raises(ValueError, match="NaN"):
        forgetting(np.full((3, 3), np.nan))


# ------------------------------------------------------------------ generators
def test_make_permuted_tasks():
    rng = np.random.RandomState(0)
    X, y = rng.rand(20, 9), rng.randint(3, size=20)
    Xt, yt, t = make_permuted_tasks(X, y, n_tasks=3, random_state=1)
    assert Xt.shape == (60, 9) and Xt.dtype == np.float32
    np.testing.assert_array_equal(yt, np.tile(y, 3))
    np.testing.assert_allclose(Xt[t == 0], X, rtol=1e-6)  # first task: identity
    perm_rows = Xt[t == 1]
    assert not np.allclose(perm_rows, X)
    np.testing.assert_allclose(np.sort(perm_rows, 1), np.sort(X, 1).astype(np.float32))
    # another set (a test set) with the same random_state gets the same permutations
    X2 = rng.rand(5, 9)
    Xt2, _, t2 = make_permuted_tasks(X2, np.zeros(5), n_tasks=3, random_state=1)
    Xa, _, _ = make_permuted_tasks(np.vstack([X, X2]), np.zeros(25), n_tasks=3, random_state=1)
    np.testing.assert_allclose(Xa[25 * 2 + 20:], Xt2[t2 == 2])
    images = rng.rand(4, 1, 3, 3)
    Xi, _, _ = make_permuted_tasks(images, np.zeros(4), n_tasks=2, random_state=0)
    assert Xi.shape == (8, 1, 3, 3)


def test_make_rotated_tasks():
    rng = np.random.RandomState(0)
    X = rng.rand(6, 1, 8, 8)
    Xt, yt, t = make_rotated_tasks(X, np.arange(6), angles=[0, 90, 45])
    assert Xt.shape == (18, 1, 8, 8)
    np.testing.assert_allclose(Xt[t == 1], np.rot90(X, 1, axes=(2, 3)), atol=1e-6)
    flat, _, tf = make_rotated_tasks(X.reshape(6, 64), np.arange(6), n_tasks=4, random_state=0)
    assert flat.shape == (24, 64) and set(tf) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="square"):
        make_rotated_tasks(rng.rand(3, 10), np.arange(3))


def test_make_split_tasks():
    y = np.array([0, 1, 2, 3, 4, 5, 0, 2, 4])
    X = np.arange(18.).reshape(9, 2)
    Xt, yt, t = make_split_tasks(X, y, n_tasks=3)
    assert sorted(Xt[:, 0].tolist()) == sorted(X[:, 0].tolist())
    for k, group in enumerate([{0, 1}, {2, 3}, {4, 5}]):
        assert set(yt[t == k]) == group
    _, yr, tr = make_split_tasks(X, y, classes=[[5, 4], [0, 1, 2]], relabel=True)
    assert set(yr[tr == 0]) == {0, 1} and set(yr[tr == 1]) == {0, 1, 2}
    _, ys, ts = make_split_tasks(X, y, classes=[[5, 4], [0, 1, 2]])
    assert set(ys[ts == 0]) == {4, 5} and len(ys) == 8  # class 3 left out
    with pytest.raises(ValueError, match="disjoint"):
        make_split_tasks(X, y, classes=[[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="do not occur"):
        make_split_tasks(X, y, classes=[[0, 9]])
    with pytest.raises(ValueError, match="n_tasks"):
        make_split_tasks(X, y, n_tasks=7)


def test_plot_accuracy_matrix():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sktransfer.plotting import plot_accuracy_matrix

    R_nan = R.copy()
    R_nan[0, 2] = np.nan
    ax = plot_accuracy_matrix(R_nan, task_names=["a", "b", "c"], title="naive")
    assert ax.get_title() == "naive"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert len(ax.texts) == 8  # the NaN cell is left blank
    with pytest.raises(ValueError, match="square"):
        plot_accuracy_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="task_names"):
        plot_accuracy_matrix(R, task_names=["a"])
    plt.close("all")
