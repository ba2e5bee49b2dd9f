"""sktransfer.plotting.plot_history on tiny real fits."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from skorch.dataset import ValidSplit  # noqa: E402

from sktransfer.continual import ContinualClassifier  # noqa: E402
from sktransfer.datasets import make_split_tasks  # noqa: E402
from sktransfer.multitask import MultiTaskClassifier  # noqa: E402
from sktransfer.plotting import plot_history  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X[:300] / 16).astype(np.float32), y[:300]


@pytest.fixture(scope="module")
def multitask(digits):
    X, y = digits
    Y = np.c_[y % 2, (y >= 5).astype(int)]
    return MultiTaskClassifier(hidden_layer_sizes=(8,), max_epochs=3, random_state=0,
                               train_split=ValidSplit(0.2)).fit(X, Y)


@pytest.fixture(scope="module")
def continual(digits):
    X, y = digits
    Xs, ys, t = make_split_tasks(X, y, n_tasks=3)
    return ContinualClassifier(hidden_layer_sizes=(8,), max_epochs=2,
                               random_state=0).fit(Xs, ys, task_ids=t)


def _line_data(ax):
    return [(line.get_label(), list(line.get_xdata()), list(line.get_ydata()))
            for line in ax.lines]


def test_multitask_history_has_loss_task_loss_and_weight_panels(multitask):
    h = multitask.net_.history
    axes = plot_history(multitask)
    assert isinstance(axes, np.ndarray) and len(axes) == 3
    assert [a.get_title() for a in axes] == ["loss", "per-task loss", "task weights"]
    epochs = [1, 2, 3]

    loss = _line_data(axes[0])
    assert [name for name, _, _ in loss] == ["train", "valid"]
    assert loss[0][1] == epochs
    np.testing.assert_allclose(loss[0][2], h[:, "train_loss"])
    np.testing.assert_allclose(loss[1][2], h[:, "valid_loss"])
    assert axes[0].lines[1].get_linestyle() == "--"

    task = _line_data(axes[1])
    assert [name for name, _, _ in task] == ["task 0 (train)", "task 1 (train)",
                                              "task 0 (valid)", "task 1 (valid)"]
    train, valid = np.array(h[:, "train_task_losses"]), np.array(h[:, "valid_task_losses"])
    for k in range(2):
        np.testing.assert_allclose(task[k][2], train[:, k])
        np.testing.assert_allclose(task[2 + k][2], valid[:, k])
        # a task keeps its colour across train and valid
        assert axes[1].lines[k].get_color() == axes[1].lines[2 + k].get_color()

    weights = _line_data(axes[2])
    assert [name for name, _, _ in weights] == ["task 0", "task 1"]
    np.testing.assert_allclose(np.c_[weights[0][2], weights[1][2]],
                               h[:, "train_task_weights"])
    # legends carry the same labels
    assert [t.get_text() for t in axes[1].get_legend().get_texts()] == [n for n, _, _ in task]


def test_one_panel_names_and_ax(multitask):
    fig, ax = plt.subplots()
    out = plot_history(multitask, "task_weights", task_names=["odd", "big"], ax=ax,
                       title="weights")
    assert out is ax and ax.get_title() == "weights"
    assert [line.get_label() for line in ax.lines] == ["odd", "big"]
    # several panels on given axes; the estimator's net and its History work too
    _, axs = plt.subplots(1, 2)
    out = plot_history(multitask.net_, ["loss", "train_task_losses"], ax=axs, title="mt")
    assert list(out) == list(axs) and axs[0].figure.get_suptitle() == "mt"
    assert [line.get_label() for line in axs[1].lines] == ["task 0", "task 1"]
    ax = plot_history(multitask.net_.history, "task_losses", task_names=["a", "b"])
    assert ax.lines[0].get_label() == "a (train)"
    with pytest.raises(ValueError, match="one Axes per panel"):
        plot_history(multitask, ax=axs)
    with pytest.raises(ValueError, match="task_names has 3 names"):
        plot_history(multitask, "task_losses", task_names=["a", "b", "c"])


def test_continual_history_and_boundaries(continual):
    h = continual.net_.history
    axes = plot_history(continual)  # no per-task keys: the loss panel only
    assert len(axes) == 1
    ax = axes[0]
    [(label, x, y)] = _line_data(ax)
    assert label == "train" and x == list(range(1, 7))
    np.testing.assert_allclose(y, h[:, "train_loss"])
    # 3 tasks of 2 epochs: boundaries between epochs 2|3 and 4|5, the tasks named
    [bounds] = ax.collections
    assert [seg[0, 0] for seg in bounds.get_segments()] == [2.5, 4.5]
    assert [t.get_text() for t in ax.texts] == ["task 0", "task 1", "task 2"]
    ax = plot_history(continual, "loss", task_names=["0-2", "3-5", "6-9"])
    assert [t.get_text() for t in ax.texts] == ["0-2", "3-5", "6-9"]
    # other history keys can be panels; no boundaries when asked not to
    ax = plot_history(continual, "train_penalty", task_boundaries=False)
    assert [line.get_label() for line in ax.lines] == ["train_penalty"]
    assert not ax.collections and not ax.texts
    # from a bare History the tasks are unknown: nothing marked
    ax = plot_history(h, "loss")
    assert not ax.collections


def test_continual_boundaries_need_full_epochs(digits):
    X, y = digits
    clf = ContinualClassifier(hidden_layer_sizes=(8,), max_epochs=2, random_state=0)
    clf.partial_fit(X[y < 5], y[y < 5], classes=np.arange(10))
    clf.net_.max_epochs = 1  # the second task trains 1 epoch: the split is not certain
    clf.partial_fit(X[y >= 5], y[y >= 5])
    assert len(clf.net_.history) == 3
    ax = plot_history(clf, "loss")
    assert not ax.collections


def test_continual_valid_split(digits):
    X, y = digits
    Xs, ys, t = make_split_tasks(X, y, n_tasks=2)
    clf = ContinualClassifier(hidden_layer_sizes=(8,), max_epochs=2, random_state=0,
                              train_split=ValidSplit(0.2)).fit(Xs, ys, task_ids=t)
    ax = plot_history(clf, "loss")
    assert [line.get_label() for line in ax.lines] == ["train", "valid"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), clf.net_.history[:, "valid_loss"])
    assert [seg[0, 0] for seg in ax.collections[0].get_segments()] == [2.5]


def test_unfitted_models_and_missing_keys_raise_errors_naming_them(multitask, continual):
    with pytest.raises(NotFittedError, match="not fitted"):
        plot_history(MultiTaskClassifier())
    with pytest.raises(ValueError, match="not fitted"):  # NotFittedError is a ValueError
        plot_history(ContinualClassifier())
    with pytest.raises(ValueError, match="no train_task_losses or valid_task_losses"):
        plot_history(continual, "task_losses")
    with pytest.raises(ValueError, match="no valid_acc.*its keys are"):
        plot_history(multitask, ["loss", "valid_acc"])
    with pytest.raises(ValueError, match="no epochs"):
        plot_history([])
    with pytest.raises(TypeError, match="skorch History"):
        plot_history(np.zeros(3))


def test_estimator_without_training(digits):
    from torch import nn

    from sktransfer.transfer import PretrainedFeatures

    X, _ = digits
    features = PretrainedFeatures(nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3)),
                                  random_state=0).fit(X[:60])
    with pytest.raises(ValueError, match="trains no network"):
        plot_history(features)
