"""Optional matplotlib helpers (``pip install sktransfer[plot]`` or any matplotlib).

matplotlib is imported only when a function here is called, so the rest of
the package does not depend on it.
"""

import numpy as np

__all__ = ["plot_accuracy_matrix"]


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
    ax : matplotlib Axes

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
