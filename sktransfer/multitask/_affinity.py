"""Inter-task affinity from lookahead updates (TAG, Fifty et al., 2021).

During one short training run of a network with shared parameters
``theta_s`` (hard parameter sharing), at a training step with weights
``theta`` and batch ``b``, each task ``i`` in turn takes a lookahead SGD
step on the shared parameters with its own loss only,

    theta_s' = theta_s - lr * grad_{theta_s} L_i(theta, b),

(the task-specific parameters stay as they are) and the change it makes to
every task ``j``'s loss on the same batch is measured:

    Z_{i->j} = 1 - L_j(theta_s', theta_j, b) / L_j(theta_s, theta_j, b).

A positive ``Z_{i->j}``: the step of task ``i`` lowered task ``j``'s loss
(``i`` helps ``j``); a negative one: it raised it. The affinity is the mean
of ``Z`` over the steps, a T x T matrix with row ``i`` the task that
stepped and column ``j`` the task measured.

:class:`TaskAffinity` is the skorch callback that measures it during any
training of :class:`~sktransfer.multitask.MultiTaskClassifier` or
:class:`~sktransfer.multitask.MultiTaskRegressor` (``callbacks=[...]``),
recording ``train_task_affinity`` in ``net_.history`` every epoch;
:func:`task_affinity` runs the short training and returns the matrix.
The lookahead evaluates the network as a pure function of its parameters
(:func:`torch.func.functional_call`): the weights are never copied or
modified, and the training run is the same with or without the callback.
"""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions, validate_params
from skorch.callbacks import Callback, PrintLog
from skorch.dataset import unpack_data
from skorch.utils import to_tensor
from torch.func import functional_call

from .._weights import without_weights
from ._gradient_step import shared_parameters
from ._targets import _is_missing

__all__ = ["TaskAffinity", "task_affinity"]

#: The history key of the per-epoch affinity matrix.
HISTORY_KEY = "train_task_affinity"


class TaskAffinity(Callback):
    """Measure the inter-task affinity during training (TAG lookahead).

    At every ``every``-th training step, before the optimizer's step, each
    task ``i`` present in the batch takes a lookahead SGD step of size
    ``lr`` on the shared parameters using its own loss only, and the
    relative change of every task ``j``'s loss on the same batch is
    recorded, ``Z[i, j] = 1 - L_j(after i's step) / L_j(before)`` (Fifty
    et al., 2021). The mean over the epoch's steps is written to the
    history as ``train_task_affinity`` (a list of T lists of T floats, NaN
    for a pair never measured); :attr:`affinity_` holds the mean over all
    steps so far.

    The shared parameters are the network's ``shared_parameters()``
    (``architecture="hard"``: the trunk; ``"independent"`` shares nothing
    and is an error). The lookahead runs the network as a function of its
    parameters (:func:`torch.func.functional_call`) in the training mode,
    on copies of its buffers and with the same dropout draw before and
    after each lookahead, and leaves torch's random state as it was: the
    training run is the same with or without this callback.

    Parameters
    ----------
    lr : float or None, default=None
        Size of the lookahead SGD step; ``None``: the net's ``lr``.
    every : int, default=1
        Measure at every ``every``-th training step (each costs one forward
        pass, T backward passes and T forward passes).

    Attributes
    ----------
    affinity_ : ndarray of shape (n_tasks, n_tasks)
        The mean of ``Z`` over every step measured since training began.
    n_steps_ : int
        The number of steps measured.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.multitask import MultiTaskClassifier, TaskAffinity
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(120, 4)
    >>> Y = np.column_stack([X[:, 0] > 0, X[:, 0] > 0.1, rng.randint(2, size=120)])
    >>> clf = MultiTaskClassifier(max_epochs=2, callbacks=[TaskAffinity()],
    ...                           random_state=0).fit(X, Y)
    >>> np.asarray(clf.net_.history[-1, "train_task_affinity"]).shape
    (3, 3)
    """

    def __init__(self, lr=None, every=1):
        self.lr = lr
        self.every = every

    def initialize(self):
        if self.lr is not None and not (isinstance(self.lr, Real) and np.isfinite(self.lr)
                                        and self.lr > 0):
            raise ValueError(f"TaskAffinity: lr must be a positive finite number or None; "
                             f"got {self.lr!r}")
        if not isinstance(self.every, Integral) or self.every < 1:
            raise ValueError(f"TaskAffinity: every must be a positive integer; got "
                             f"{self.every!r}")
        self._total = self._total_count = None
        self._epoch = self._epoch_count = None
        self._steps = 0
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        # the matrix would be printed as one long cell of the epoch table
        for _, cb in getattr(net, "callbacks_", ()):
            if isinstance(cb, PrintLog) and hasattr(cb, "keys_ignored_"):
                cb.keys_ignored_.add(HISTORY_KEY)

    def on_epoch_begin(self, net, **kwargs):
        self._epoch = self._epoch_count = None

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if not training:
            return
        self._steps += 1
        if (self._steps - 1) % self.every:
            return
        lr = float(net.lr if self.lr is None else self.lr)
        Z = lookahead_affinity(net, batch, lr)
        measured = ~np.isnan(Z)
        values = np.where(measured, Z, 0.0)
        if self._epoch is None:
            self._epoch, self._epoch_count = np.zeros_like(values), np.zeros_like(values)
        if self._total is None:
            self._total, self._total_count = np.zeros_like(values), np.zeros_like(values)
        self._epoch += values
        self._epoch_count += measured
        self._total += values
        self._total_count += measured

    def on_epoch_end(self, net, **kwargs):
        if self._epoch is None:
            return
        net.history.record(HISTORY_KEY, _mean(self._epoch, self._epoch_count).tolist())

    @property
    def affinity_(self):
        if getattr(self, "_total", None) is None:
            raise AttributeError("affinity_: this TaskAffinity has measured no step yet")
        return _mean(self._total, self._total_count)

    @property
    def n_steps_(self):
        steps = getattr(self, "_steps", 0)
        return 0 if steps == 0 else (steps - 1) // self.every + 1


def _mean(total, count):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def lookahead_affinity(net, batch, lr):
    """``Z[i, j]`` of one batch under the net's current weights (NaN: not measured).

    Parameters
    ----------
    net : MultiTaskNet
        The initialized private net of a multi-task estimator.
    batch : tuple
        ``(X, y)`` as the net's iterator yields it.
    lr : float
        The lookahead step size.

    Returns
    -------
    ndarray of shape (n_tasks, n_tasks)
    """
    module = net.module_
    shared = shared_parameters(module.model, "the task affinity")
    if not shared:
        raise ValueError(
            f"the task affinity measures how a step on the shared parameters changes the "
            f"other tasks' losses, but the architecture {type(module.model).__name__} shares "
            f"no parameter between tasks; use architecture='hard'")
    shared_ids = {id(p) for p in shared}
    params = {name: p.detach() for name, p in module.named_parameters()}
    names = [name for name, p in module.named_parameters() if id(p) in shared_ids]
    buffers = {name: b.clone() for name, b in module.named_buffers()}
    Xi, yi = unpack_data(batch)
    Xi = to_tensor(Xi, device=net.device)
    yi = to_tensor(yi, device=net.device)
    inputs = without_weights(Xi)

    def losses_at(state):
        if isinstance(inputs, dict):
            out = functional_call(module, {**state, **buffers}, args=(), kwargs=inputs)
        else:
            out = functional_call(module, {**state, **buffers}, args=(inputs,))
        return net.task_losses(out, yi, Xi)

    device = torch.device(net.device) if str(net.device).startswith("cuda") else None
    devices = [] if device is None else [device]
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        # every forward pass draws the same dropout masks: from the state at entry
        # (restored by fork_rng on exit, so training draws as it would have)
        cpu_state = torch.get_rng_state()
        cuda_state = None if device is None else torch.cuda.get_rng_state(device)

        def same_draw():
            torch.set_rng_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, device)

        leaves = {name: params[name].clone().requires_grad_(True) for name in names}
        same_draw()
        losses, counts = losses_at({**params, **leaves})
        n_tasks = losses.shape[0]
        present = (counts > 0).cpu().numpy()
        base = losses.detach().double().cpu().numpy()
        Z = np.full((n_tasks, n_tasks), np.nan)
        tasks = np.flatnonzero(present)
        targets = [leaves[name] for name in names]
        for k, i in enumerate(tasks):
            grads = torch.autograd.grad(losses[i], targets, retain_graph=k < len(tasks) - 1,
                                        allow_unused=True)
            with torch.no_grad():
                stepped = {name: params[name] if g is None else params[name] - lr * g
                           for name, g in zip(names, grads)}
                same_draw()
                after, _ = losses_at({**params, **stepped})
            after = after.double().cpu().numpy()
            ok = present & (base > 0)
            Z[i, ok] = 1.0 - after[ok] / base[ok]
    return Z


@validate_params(
    {
        "X": ["array-like"],
        "Y": ["array-like"],
        "random_state": ["random_state"],
        "task_types": [list, tuple, dict, None],
        "estimator": [None, HasMethods(["fit", "get_params"])],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, np.inf, closed="neither"), None],
        "every": [Interval(Integral, 1, None, closed="left")],
        "missing_label": [Real, str, None],
        "aggregate": [StrOptions({"mean", "last"})],
    },
    prefer_skip_nested_validation=True,
)
def task_affinity(X, Y, random_state=None, *, task_types=None, estimator=None, max_epochs=5,
                  lr=None, every=1, missing_label=None, aggregate="mean"):
    """Inter-task affinity of the columns of ``Y``, from one short shared training run.

    Trains one multi-task network with hard parameter sharing on all tasks
    for ``max_epochs`` epochs; at every step each task takes a lookahead
    SGD step on the shared trunk with its own loss, and the relative change
    of each task's loss on the batch is recorded (TAG, Fifty et al., 2021):

        Z[i, j] = 1 - L_j(theta_s - lr * grad L_i, theta_j) / L_j(theta_s, theta_j)

    averaged over the steps. See :class:`TaskAffinity`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
    Y : array-like of shape (n_samples, n_tasks)
        One column per task; NaN (or None, or ``missing_label``) where a row
        has no label for that task. Every column needs at least one label.
    random_state : int, RandomState or None, default=None
        Seeds the training run.
    task_types : None, list or dict, default=None
        ``"classification"`` (the default) or ``"regression"`` per column,
        as :class:`~sktransfer.multitask.MultiTaskClassifier`'s
        ``task_types``.
    estimator : MultiTaskClassifier, MultiTaskRegressor or None, default=None
        The network and training settings (cloned; its ``architecture`` is
        set to ``"hard"``, its ``max_epochs`` to ``max_epochs``). ``None``: a
        ``MultiTaskClassifier(lr=0.01)`` (an MLP trunk of 100 units for 2-D
        ``X``, a Conv4 for images; Adam). The heads of the tasks start from
        independent random weights, so early steps that help one head can
        hurt another even for identical tasks; the affinity becomes
        informative as the heads learn, within a few epochs at this rate
        (ten times the estimator's default).
    max_epochs : int, default=5
        Length of the training run.
    lr : float or None, default=None
        Lookahead step size; ``None``: the training ``lr``.
    every : int, default=1
        Measure at every ``every``-th step.
    missing_label : scalar or None, default=None
        An extra value that marks a missing label.
    aggregate : {"mean", "last"}, default="mean"
        ``"mean"``: over all steps of the run; ``"last"``: over the steps of
        the last epoch.

    Returns
    -------
    ndarray of shape (n_tasks, n_tasks)
        ``A[i, j]``: the affinity of task ``i`` onto task ``j`` (how much a
        step on task ``i`` lowers task ``j``'s loss, relatively). NaN for a
        pair of tasks that never had labels in the same batch.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.multitask import task_affinity
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(300, 5)
    >>> Y = np.column_stack([X[:, 0] > 0, X[:, 0] + 0.2 * X[:, 1] > 0,
    ...                      rng.randint(2, size=300)]).astype(float)
    >>> A = task_affinity(X, Y, random_state=0, max_epochs=10, lr=0.1)
    >>> A.shape
    (3, 3)
    >>> bool(A[0, 1] > A[2, 1])    # task 0 helps task 1 more than random labels do
    True
    """
    X, Y = check_affinity_data(X, Y, missing_label)
    est = _affinity_estimator(estimator, max_epochs, random_state, lr, every)
    if task_types is not None:
        est.set_params(task_types=task_types)
    if missing_label is not None:
        est.set_params(missing_label=missing_label)
    est.fit(X, Y)
    return fitted_affinity(est, aggregate)


def _affinity_estimator(estimator, max_epochs, random_state, lr, every):
    """A fresh hard-sharing estimator with a :class:`TaskAffinity` callback."""
    from ._classifier import MultiTaskClassifier

    est = MultiTaskClassifier(lr=0.01) if estimator is None else clone(estimator)
    callbacks = [cb for cb in (est.get_params().get("callbacks") or [])
                 if not isinstance(cb, TaskAffinity)]
    est.set_params(architecture="hard", max_epochs=max_epochs,
                   callbacks=[*callbacks, TaskAffinity(lr=lr, every=every)])
    if random_state is not None:
        est.set_params(random_state=random_state)
    return est


def fitted_affinity(estimator, aggregate="mean"):
    """The affinity measured by the :class:`TaskAffinity` of a fitted estimator."""
    callback = next(cb for _, cb in estimator.net_.callbacks_ if isinstance(cb, TaskAffinity))
    if aggregate == "last":
        return np.asarray(estimator.net_.history[-1, HISTORY_KEY], dtype=float)
    return callback.affinity_


def check_affinity_data(X, Y, missing_label=None):
    """Validate the shapes of ``X`` and the 2-D ``Y`` of :func:`task_affinity`.

    Returns ``X`` (as given) and ``Y`` (a DataFrame as given, else an array).
    """
    Y_arr = Y if hasattr(Y, "columns") else np.asarray(Y)
    if getattr(Y_arr, "ndim", 0) != 2:
        raise ValueError(f"Y must be 2-D, one column per task (n_samples, n_tasks); got an "
                         f"array of shape {np.shape(Y_arr)}")
    n = len(X) if hasattr(X, "__len__") else np.asarray(X).shape[0]
    if Y_arr.shape[0] != n:
        raise ValueError(f"X and Y have different numbers of rows: X has {n} samples but Y "
                         f"has {Y_arr.shape[0]} rows")
    if Y_arr.shape[1] < 1:
        raise ValueError("Y has no column: give one column per task")
    names = list(Y_arr.columns) if hasattr(Y_arr, "columns") else list(range(Y_arr.shape[1]))
    for k, name in enumerate(names):
        col = np.asarray(Y_arr.iloc[:, k] if hasattr(Y_arr, "iloc") else Y_arr[:, k])
        if _is_missing(col, missing_label).all():
            raise ValueError(f"column {name!r} of Y has no label (all values are missing): "
                             f"every task needs labelled rows for its affinity")
    return X, Y_arr
