"""Optional matplotlib helpers (``pip install sktransfer[plot]`` or any matplotlib).

matplotlib is imported only when a function here is called, so the rest of
the package does not depend on it.
"""

import numpy as np

__all__ = ["plot_accuracy_matrix", "plot_history"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("sktransfer.plotting needs matplotlib: pip install matplotlib") from exc
    return plt


def plot_accuracy_matrix(R, *, task_names=None, ax=None, title=None, cmap="viridis",
                         annotate=True, vmin=0.0, vmax=1.0):
    """Draw the accuracy matrix of a task sequence as a heat map.

    Row ``i`` is the model after learning task ``i``, column ``j`` the test
    set of task ``j``: the lower triangle shows what is kept (or forgotten),
    the diagonal what was just learned, the upper triangle the tasks not
    learned yet. NaN entries (no head yet in the task scenario) are left
    blank.

    Parameters
    ----------
    R : array-like of shape (T, T)
        ``R[i, j]``, the accuracy on task ``j`` after learning task ``i``
        (e.g. ``accuracy_matrix_`` of a continual classifier).
    task_names : list of str or None
        Tick labels (default ``1 .. T``).
    ax : matplotlib Axes or None
        Where to draw; a new figure when None.
    title : str or None
    cmap : str, default="viridis"
    annotate : bool, default=True
        Write each accuracy in its cell.
    vmin, vmax : float, default=0, 1
        Colour scale limits.

    Returns
    -------
    matplotlib Axes
        The Axes drawn on (``ax``, or the Axes of a new figure).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sktransfer.plotting import plot_accuracy_matrix
    >>> ax = plot_accuracy_matrix([[0.9, 0.1], [0.6, 0.8]], title="naive")
    >>> ax.get_xlabel()
    'evaluated on task'
    """
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(f"R must be a square (T, T) matrix, got shape {R.shape}")
    T = R.shape[0]
    names = [str(k + 1) for k in range(T)] if task_names is None else [str(n) for n in
                                                                         task_names]
    if len(names) != T:
        raise ValueError(f"task_names has {len(names)} names for {T} tasks")
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.6 * T, 0.8 + 0.6 * T))
    image = ax.imshow(np.ma.masked_invalid(R), cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_xticks(range(T), names)
    ax.set_yticks(range(T), names)
    ax.set_xlabel("evaluated on task")
    ax.set_ylabel("after learning task")
    if title:
        ax.set_title(title)
    if annotate:
        mid = (vmin + vmax) / 2
        for i in range(T):
            for j in range(T):
                if np.isfinite(R[i, j]):
                    ax.text(j, i, f"{R[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="black" if R[i, j] > mid else "white")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


#: The panels of :func:`plot_history`: title, y label and the history keys
#: drawn (key, what the line is, line style).
_HISTORY_PANELS = {
    "loss": ("loss", "loss", [("train_loss", "train", "-"), ("valid_loss", "valid", "--")]),
    "task_losses": ("per-task loss", "loss", [("train_task_losses", "train", "-"),
                                              ("valid_task_losses", "valid", "--")]),
    "task_weights": ("task weights", "weight", [("train_task_weights", None, "-")]),
}


def _history_of(source):
    """``(history, estimator or None)`` of a fitted estimator, a skorch net or a History."""
    from sklearn.exceptions import NotFittedError
    from skorch import NeuralNet

    if hasattr(source, "steps") and hasattr(source, "named_steps"):  # a Pipeline
        source = source.steps[-1][1]
    if isinstance(source, NeuralNet):
        if not getattr(source, "initialized_", False) or not hasattr(source, "history_"):
            raise NotFittedError(f"this {type(source).__name__} is not initialized yet: it "
                                 "has no history to plot; fit it first")
        return source.history_, None
    if hasattr(source, "fit") and hasattr(source, "get_params"):
        net = getattr(source, "net_", None)
        fitted_attribute = getattr(source, "_fitted_attribute", "net_")
        if net is None and fitted_attribute != "net_" and hasattr(source, fitted_attribute):
            raise ValueError(f"{type(source).__name__} trains no network: it has no training "
                             "history to plot")
        if net is None:
            raise NotFittedError(f"this {type(source).__name__} is not fitted yet: it has no "
                                 "training history to plot; call 'fit' first")
        history = getattr(net, "history_", None)
        if history is None:
            raise ValueError(f"{type(source).__name__}.net_ has no history to plot")
        return history, source
    if isinstance(source, (list, tuple)) and all(isinstance(row, dict) for row in source):
        return source, None  # a skorch History is a list of dicts
    raise TypeError("plot_history needs a fitted sktransfer estimator, a skorch net or a "
                    f"skorch History; got {type(source).__name__}")


def _series(history, key):
    """``(epochs, values)`` of the rows of ``history`` that hold ``key``."""
    epochs, values = [], []
    for i, row in enumerate(history):
        if row.get(key) is not None:
            epochs.append(row.get("epoch", i + 1))
            values.append(row[key])
    return epochs, values


def _name_tasks(names, n_tasks):
    """Line labels of ``n_tasks`` tasks: the names, or ``task 0 ..`` when they do not fit."""
    if names is None or len(names) != n_tasks:
        names = range(n_tasks)
    return [n if isinstance(n, str) else f"task {n}" for n in names]


def _task_boundaries(estimator, history, task_names):
    """Epoch positions between the tasks of a continual fit, and the tasks' names.

    Found only when they are certain: every task (experience) ran the net's
    ``max_epochs`` epochs, so that the history holds exactly
    ``n_experiences_ * max_epochs`` rows (early stopping, or ``max_epochs``
    changed between calls, breaks that and nothing is marked).
    """
    n_exp = getattr(estimator, "n_experiences_", None) if estimator is not None else None
    per_task = getattr(getattr(estimator, "net_", None), "max_epochs", None)
    if not n_exp or n_exp < 2 or not per_task or len(history) != n_exp * per_task:
        return None
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    cuts = [(epochs[k * per_task - 1] + epochs[k * per_task]) / 2 for k in range(1, n_exp)]
    tasks = list(getattr(estimator, "tasks_", []) if task_names is None else task_names)
    names = None
    if len(tasks) == n_exp:  # one experience per task, in the order learned
        names = _name_tasks(tasks, n_exp)
    edges = [epochs[0] - 0.5] + cuts + [epochs[-1] + 0.5]
    return cuts, names, edges


def plot_history(estimator, panels=None, *, task_names=None, task_boundaries=True, ax=None,
                 title=None):
    """Plot the training history of a fitted estimator: losses per epoch.

    Draws what ``net_.history`` holds, one panel per kind of curve:

    * ``"loss"``: ``train_loss`` (solid) and ``valid_loss`` (dashed, with a
      validation split such as ``train_split=skorch.dataset.ValidSplit(0.2)``);
    * ``"task_losses"``: the multi-task estimators' per-task losses
      ``train_task_losses`` (solid) and ``valid_task_losses`` (dashed), one
      line per task in a colour of its own;
    * ``"task_weights"``: the multi-task estimators' per-task weights
      ``train_task_weights`` (the mean weight of each task over the epoch).

    Any other history key (e.g. ``"train_penalty"`` of the continual
    estimators, or a score recorded by a skorch ``EpochScoring`` callback)
    can be named as a panel as well: one line if it holds a number per
    epoch, one per task if it holds a list.

    Tasks are labelled with the estimator's ``tasks_`` (a name that is not a
    string shows as ``"task <name>"``). The history of a continual estimator
    spans all its tasks; the boundaries between tasks are marked with dotted
    vertical lines (and each task's name written at the top) when they are
    certain: when every task ran the full ``max_epochs`` epochs (no early
    stopping). Boundaries are drawn as a ``LineCollection``, so ``ax.lines``
    holds the data curves only.

    Parameters
    ----------
    estimator : fitted estimator, skorch net or skorch History
        A fitted sktransfer estimator (its ``net_.history``; a ``Pipeline``
        ending in one is accepted), a fitted skorch net (its ``history``), or
        a ``History`` itself (then tasks are named ``task 0 .. T-1`` unless
        ``task_names`` is given, and task boundaries are not marked).
    panels : str, list of str or None, default=None
        The panels to draw, among ``"loss"``, ``"task_losses"``,
        ``"task_weights"`` and history keys. ``None`` draws those of the
        first three for which the history has values. A string draws that one
        panel and returns one Axes.
    task_names : list of str or None
        Names of the tasks (default: ``tasks_`` of the estimator).
    task_boundaries : bool, default=True
        Mark the task boundaries of a continual estimator (when they can be
        told, see above).
    ax : matplotlib Axes, sequence of Axes or None
        Where to draw: one Axes per panel (one Axes when ``panels`` is a
        string). A new figure with one row of panels when None.
    title : str or None
        The title of the axes (one panel) or of the figure (several).

    Returns
    -------
    matplotlib Axes or ndarray of Axes
        One Axes when ``panels`` is a string, else an array of one Axes per
        panel.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        (a ``ValueError``) for an estimator that is not fitted.
    ValueError
        When the history has no epochs, or lacks the keys of a requested
        panel.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.multitask import MultiTaskClassifier
    >>> from sktransfer.plotting import plot_history
    >>> X, y = load_digits(return_X_y=True)
    >>> Y = np.c_[y % 2, y >= 5].astype(int)  # two tasks: odd? and >= 5?
    >>> clf = MultiTaskClassifier(hidden_layer_sizes=(8,), max_epochs=3, random_state=0)
    >>> clf = clf.fit(X / 16, Y)
    >>> axes = plot_history(clf)
    >>> [a.get_title() for a in axes]
    ['loss', 'per-task loss', 'task weights']
    >>> [line.get_label() for line in axes[1].lines]
    ['task 0 (train)', 'task 1 (train)']
    """
    history, est = _history_of(estimator)
    if len(history) == 0:
        raise ValueError("the history has no epochs to plot (fitted with max_epochs=0?)")
    available = sorted({key for row in history for key in row if key != "batches"})
    single = isinstance(panels, str)
    if panels is None:
        names = [name for name, (_, _, keys) in _HISTORY_PANELS.items()
                 if any(_series(history, key)[1] for key, _, _ in keys)]
        if not names:
            raise ValueError("the history holds none of train_loss, valid_loss, "
                             "train_task_losses, valid_task_losses, train_task_weights; "
                             f"its keys are {available}")
    else:
        names = [panels] if single else list(panels)
        if not names:
            raise ValueError("panels must name at least one panel")
    specs = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"panels must be names (str), got {name!r}")
        if name in _HISTORY_PANELS:
            panel_title, ylabel, keys = _HISTORY_PANELS[name]
        else:
            panel_title, ylabel, keys = name, name, [(name, None, "-")]
        drawn = [(key, kind, style, *_series(history, key)) for key, kind, style in keys]
        drawn = [d for d in drawn if d[4]]
        if not drawn:
            wanted = " or ".join(key for key, _, _ in keys)
            raise ValueError(f"the history has no {wanted} to plot in the {name!r} panel; "
                             f"its keys are {available}")
        specs.append((panel_title, ylabel, drawn))
    given_names = task_names is not None
    if given_names:
        task_names = [str(n) for n in task_names]
    else:
        tasks = getattr(est, "tasks_", None)
        task_names = None if tasks is None else list(tasks)
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    if ax is None:
        _, axes = plt.subplots(1, len(specs), figsize=(4.5 * len(specs), 3.5), squeeze=False,
                               layout="constrained")
        axes = axes[0]
    else:
        given = [ax] if hasattr(ax, "plot") else list(np.ravel(np.asarray(ax, dtype=object)))
        axes = np.empty(len(given), dtype=object)
        axes[:] = given
        if len(axes) != len(specs):
            raise ValueError(f"ax holds {len(axes)} Axes for {len(specs)} panels "
                             f"{names}; pass one Axes per panel")
    boundaries = _task_boundaries(est, history, task_names) if task_boundaries else None
    for a, (panel_title, ylabel, drawn) in zip(axes, specs):
        for key, kind, style, epochs, values in drawn:
            scalar = [np.ndim(v) == 0 for v in values]
            if all(scalar):
                color = {"train": "C0", "valid": "C1"}.get(kind)
                a.plot(epochs, np.asarray(values, dtype=float), style, color=color,
                       label=kind or key)
                continue
            widths = {len(v) for v, s in zip(values, scalar) if not s}
            if any(scalar) or len(widths) != 1:
                raise ValueError(f"history key {key!r} must hold one number, or one list of "
                                 "the same length, per epoch")
            values = np.asarray(values, dtype=float)
            if given_names and len(task_names) != values.shape[1]:
                raise ValueError(f"task_names has {len(task_names)} names but {key!r} holds "
                                 f"{values.shape[1]} values per epoch (one per task)")
            labels = _name_tasks(task_names, values.shape[1])
            for k, label in enumerate(labels):
                a.plot(epochs, values[:, k], style, color=f"C{k % 10}",
                       label=label if kind is None else f"{label} ({kind})")
        if boundaries is not None:
            cuts, seg_names, edges = boundaries
            a.vlines(cuts, 0, 1, transform=a.get_xaxis_transform(), colors="0.5",
                     linestyles=":", label="_task boundaries")
            if seg_names is not None:
                for lo, hi, seg in zip(edges[:-1], edges[1:], seg_names):
                    a.text((lo + hi) / 2, 0.98, seg, transform=a.get_xaxis_transform(),
                           ha="center", va="top", fontsize=8, color="0.4")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_xlabel("epoch")
        a.set_ylabel(ylabel)
        a.set_title(panel_title)
        a.legend(fontsize=8)
    if title:
        if single or len(axes) == 1:
            axes[0].set_title(title)
        else:
            axes[0].figure.suptitle(title)
    return axes[0] if single else axes
