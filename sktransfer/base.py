"""The shared base of every sktransfer neural estimator.

Every public estimator *owns* a private skorch net (``net_``) instead of
inheriting from one, so it stays a plain scikit-learn estimator: keyword
hyperparameters, nothing done in ``__init__``, learned state in attributes
ending in ``_``. This module holds what all of them share:

* the one template of ``fit`` / ``partial_fit`` / ``adapt`` and its hooks
  (:meth:`NeuralEstimatorMixin._run`; see the developer guide): parameter
  validation with scikit-learn's constraints, one seed rule, a dry run of
  the network, a rollback of any failed call;
* the common hyperparameters and their constraints (see
  :class:`NeuralEstimatorMixin`, :data:`COMMON_PARAMETER_CONSTRAINTS`);
* input validation to float32 with errors that name the problem;
* seeding from ``random_state`` without touching the global RNG, safe in
  threads (see :meth:`NeuralEstimatorMixin._seeded`);
* the CPU thread policy (see :func:`torch_threads`);
* device resolution, including ``"auto"``;
* a fast batch iterator for in-memory arrays;
* safe weight saving and loading (safetensors, or ``weights_only=True``).

Thread policy
-------------
On small, busy machines PyTorch's default of one intra-op thread per core
is many times slower than one thread for the small networks these estimators
train (the measurement is on the Benchmarks page, :ref:`CPU threads
<benchmarks_threads>`). While an estimator fits or predicts on the CPU it
therefore runs torch with ``SKTRANSFER_NUM_THREADS`` threads if that
environment variable is set, else with
``min(torch.get_num_threads(), max(1, n_cpus // 2))`` where ``n_cpus`` is
the number of cores this process may use; the previous setting is restored
afterwards. Under joblib workers ``torch.get_num_threads()`` is
already limited by ``OMP_NUM_THREADS``, so searches with ``n_jobs`` do not
oversubscribe either. The thread count is global to the process, so it is
only changed from the main thread: fits running in other threads (a threaded
joblib backend, a Dask worker with several threads) leave it as it is.
"""

import contextlib
import copy
import os
import pickle
import re
import threading
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn import get_config
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ._allocator import keep_freed_memory

__all__ = ["AutocastMixin", "COMMON_PARAMETER_CONSTRAINTS", "LeanNotifyMixin", "MASK_VALUE",
           "NeuralEstimatorMixin", "derive_seed", "infer_in_chunks", "parameter_constraints",
           "resolve_device", "to_tensor", "torch_threads", "trunk_output_shape"]

_DEVICES = ("cpu", "cuda", "auto")
_PRECISIONS = ("fp32", "bf16")

#: The logit given to classes a head must not predict (probability 0 after softmax).
MASK_VALUE = -1e4

#: Rows per forward pass of :func:`infer_in_chunks`.
INFERENCE_CHUNK = 1024

#: Held by every seeded section (see :meth:`NeuralEstimatorMixin._seeded`): torch's
#: weight initialisation and dropout draw from the process-wide generator, so fits in
#: several threads of one process take turns there, and each one sees only its own seed.
_RNG_LOCK = threading.RLock()

#: The stream of ``adapt`` in :func:`derive_seed` (training units use 0, 1, 2, ...).
_ADAPT_STREAM = 2**31 - 1

_finite_positive = Interval(Real, 0, np.inf, closed="neither")

#: Constraints of the parameters every neural estimator shares (scikit-learn's
#: ``_parameter_constraints`` format); an estimator's own dict starts from these.
COMMON_PARAMETER_CONSTRAINTS = {
    "module": [None, nn.Module, callable],
    "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
    "optimizer": [callable],
    "lr": [_finite_positive],
    "max_epochs": [Interval(Integral, 0, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left"), Options(Integral, {-1})],
    "callbacks": [list, tuple, None],
    "train_split": [None, callable],
    "device": [str, torch.device],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    "net_params": [dict, None],
    "precision": [StrOptions(set(_PRECISIONS))],
    "accelerator": [None, HasMethods(["prepare", "backward"])],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, np.inf, closed="left")],
}


def parameter_constraints(**own):
    """Class decorator: set ``_parameter_constraints`` for exactly the class's parameters.

    A parameter's constraint is looked up in ``own``, then in the constraints
    the class inherits, then in :data:`COMMON_PARAMETER_CONSTRAINTS`; a
    parameter with none is an error when the class is defined.

    Parameters
    ----------
    **own : list
        The class's own constraints, by parameter name, each a list of
        constraints in scikit-learn's ``_parameter_constraints`` format.

    Returns
    -------
    callable
        The class decorator: it sets ``_parameter_constraints`` on the class
        and returns the class. It raises ``TypeError`` for a parameter of the
        class's ``__init__`` that has no constraint.
    """
    def decorate(cls):
        table = {**COMMON_PARAMETER_CONSTRAINTS,
                 **getattr(cls, "_parameter_constraints", {}), **own}
        names = cls._get_param_names()
        missing = [name for name in names if name not in table]
        if missing:
            raise TypeError(f"{cls.__name__}: no parameter constraint for {missing}")
        cls._parameter_constraints = {name: table[name] for name in names}
        return cls
    return decorate


def derive_seed(seed, stream):
    """The seed of training unit (or stream) ``stream`` of a model seeded with ``seed``.

    Stream 0 is ``seed`` itself; every other stream is an independent draw of
    :class:`numpy.random.SeedSequence` ``(seed, stream)``.

    Parameters
    ----------
    seed : int
        The seed the model drew from ``random_state`` when it was built.
    stream : int
        The stream: ``i`` for training unit ``i`` (the ``i``-th
        ``partial_fit`` call after the first, or the ``i``-th task of a
        continual ``fit``; 0 for the first), ``2**31 - 1`` for ``adapt``.

    Returns
    -------
    int
        ``seed`` for stream 0, else a seed in ``[0, 2**31 - 1)``.
    """
    if stream == 0:
        return int(seed)
    state = np.random.SeedSequence([int(seed), int(stream)]).generate_state(1)[0]
    return int(state) % np.iinfo(np.int32).max


def to_tensor(a):
    """A CPU tensor sharing ``a``'s memory where it can (a copy for read-only arrays).

    Parameters
    ----------
    a : ndarray or torch.Tensor
        The array; a tensor is returned as it is.

    Returns
    -------
    torch.Tensor
        A tensor of ``a``'s dtype and shape.
    """
    if isinstance(a, torch.Tensor):
        return a
    return torch.as_tensor(a) if a.flags.writeable else torch.tensor(a)


def infer_in_chunks(fn, X, device="cpu", modules=(), chunk=INFERENCE_CHUNK):
    """``fn(batch)`` over ``X`` in chunks, in evaluation mode and without gradients.

    Parameters
    ----------
    fn : callable
        Maps a tensor of rows of ``X`` (on ``device``) to a tensor of
        outputs, one per row.
    X : ndarray or torch.Tensor of shape (n_samples, ...)
        The rows, ``chunk`` at a time.
    device : str or torch.device, default="cpu"
        Where each chunk is moved before ``fn`` sees it.
    modules : sequence of nn.Module, default=()
        Put in evaluation mode for the call and restored to their training
        mode after.
    chunk : int, default=1024
        Rows per call of ``fn``.

    Returns
    -------
    torch.Tensor
        The outputs concatenated along the first dimension, as float32 on
        the CPU (an empty tensor when ``X`` has no rows).
    """
    was = [m.training for m in modules]
    for m in modules:
        m.eval()
    outs = []
    try:
        with torch.no_grad():
            for start in range(0, X.shape[0], chunk):
                out = fn(to_tensor(X[start:start + chunk]).to(device))
                outs.append(out.float().cpu())
    finally:
        for m, w in zip(modules, was):
            m.train(w)
    return torch.cat(outs) if outs else torch.empty(0)


def trunk_output_shape(trunk, sample_shape):
    """Shape of one sample's trunk output, from a dry run of two zero samples in eval mode.

    Parameters
    ----------
    trunk : nn.Module
        The network; it runs without gradients, in the dtype and on the
        device of its first parameter, and its training mode is restored
        after.
    sample_shape : tuple of int
        Shape of one input sample, ``(n_features,)`` or ``(C, H, W)``.

    Returns
    -------
    tuple of int
        The shape of one sample's output, without the batch dimension.

    Raises
    ------
    ValueError
        If the trunk does not return a tensor of shape ``(n_samples, ...)``.
    """
    was_training = trunk.training
    trunk.eval()
    try:
        with torch.no_grad():
            param = next(trunk.parameters(), None)
            kwargs = {} if param is None else {"dtype": param.dtype, "device": param.device}
            out = trunk(torch.zeros((2, *sample_shape), **kwargs))
    finally:
        trunk.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() < 2:
        raise ValueError(
            f"the trunk module must return a (n_samples, ...) tensor; it returned "
            f"{type(out).__name__} of shape {getattr(out, 'shape', None)}")
    return tuple(out.shape[1:])


def _first_layer_expectation(module):
    """What the first linear or convolutional layer of ``module`` expects, in words."""
    if not isinstance(module, nn.Module):
        return ""
    for name, layer in module.named_modules():
        if isinstance(layer, nn.Linear) and not nn.parameter.is_lazy(layer.weight):
            return (f"; its first linear layer ({name or 'the module'}) expects "
                    f"{layer.in_features} input features")
        if isinstance(layer, nn.modules.conv._ConvNd) and not nn.parameter.is_lazy(layer.weight):
            return (f"; its first convolution ({name or 'the module'}) expects "
                    f"{layer.in_channels} input channels")
    return ""


@contextlib.contextmanager
def _module_fits(estimator, sample_shape, module):
    """Turn a forward-pass error while building or dry-running into a clear ValueError."""
    try:
        yield
    except RuntimeError as exc:
        raise ValueError(
            f"{type(estimator).__name__}: the network does not fit the data: X has sample "
            f"shape {tuple(sample_shape)}{_first_layer_expectation(module)}. "
            f"The forward pass failed with: {exc}") from exc


class _Call:
    """What the template knows about one fit / partial_fit / adapt call."""

    def __init__(self, name, new_model, device, hidden_layer_sizes):
        self.name = name
        self.new_model = new_model
        self.device = device
        self.hidden_layer_sizes = hidden_layer_sizes
        self.seed = None
        self.units = 0


def _n_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def default_num_threads():
    """Number of torch CPU threads an estimator uses (see the thread policy)."""
    env = os.environ.get("SKTRANSFER_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError as exc:
            raise ValueError(
                f"SKTRANSFER_NUM_THREADS must be a positive integer, got {env!r}"
            ) from exc
        if n < 1:
            raise ValueError(f"SKTRANSFER_NUM_THREADS must be a positive integer, got {n}")
        return n
    return max(1, min(torch.get_num_threads(), _n_cpus() // 2))


@contextlib.contextmanager
def torch_threads(n=None, force=False):
    """Run torch with ``n`` intra-op CPU threads, restoring the old count after.

    Parameters
    ----------
    n : int or None
        Thread count; ``None`` applies the package's thread policy
        (:func:`default_num_threads`).
    force : bool
        Apply it in a worker thread too. The seeded sections of fits do, since
        they run one at a time (they hold the package's RNG lock), so a fit
        computes with the same thread count, and the same rounding, in any thread.

    Yields
    ------
    None
        The body of the ``with`` block runs with ``n`` threads (in a worker
        thread without ``force``: with the count unchanged).
    """
    old = torch.get_num_threads()
    if not force and threading.current_thread() is not threading.main_thread():
        # Setting a process-wide count from a worker thread would race with
        # the other threads' fits; leave it alone.
        yield
        return
    n = default_num_threads() if n is None else int(n)
    if n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


def resolve_device(device):
    """Resolve ``"auto"`` to ``"cuda"`` when available, else ``"cpu"``.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``, ``"cuda"`` (optionally ``"cuda:N"``) or ``"auto"``.

    Returns
    -------
    str
        The device to use: ``device`` itself, or what ``"auto"`` stands for.

    Raises
    ------
    ValueError
        For an unknown device string, or for ``"cuda"`` on a machine without
        a usable GPU.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not re.fullmatch(r"auto|(cpu|cuda)(:\d+)?", device):
        raise ValueError(f"device must be one of {_DEVICES} (optionally 'cuda:N'), got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but no CUDA device is available; "
            "use device='cpu' or device='auto'"
        )
    return device


class _FastBatchIterator:
    """Iterate over in-memory tensors in batches by slicing, not per sample.

    skorch's default ``DataLoader`` fetches and collates one sample at a
    time, which dominates the step time of small networks. This iterator
    takes the arrays out of a ``skorch.dataset.Dataset`` (or of the subset of
    one that a validation split makes) once and yields
    ``(Xi, yi)`` batches by indexing, with the same shuffling semantics
    (a fresh ``torch.randperm`` from the global generator every epoch, so
    runs are reproducible under a seed). Anything it cannot slice falls back
    to :class:`torch.utils.data.DataLoader`.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, **kwargs):
        self.dataset = dataset
        self.batch_size = int(batch_size) if batch_size not in (None, -1) else None
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.kwargs = kwargs
        self._tensors = self._extract(dataset)
        if self._tensors is None:
            self._loader = torch.utils.data.DataLoader(
                dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, **kwargs)

    @staticmethod
    def _as_tensor(a):
        if isinstance(a, torch.Tensor):
            return a
        if isinstance(a, np.ndarray) and a.dtype != object:
            return torch.as_tensor(a)
        return None

    def _extract(self, dataset):
        from skorch.dataset import Dataset

        rows = None
        if type(dataset) is torch.utils.data.Subset and type(dataset.dataset) is Dataset:
            # the training or validation part of a ValidSplit
            rows = torch.as_tensor(np.asarray(dataset.indices, dtype=np.int64))
            dataset = dataset.dataset
        if type(dataset) is not Dataset:
            return None
        X, y = dataset.X, dataset.y
        if isinstance(X, dict):
            Xt = {k: self._as_tensor(v) for k, v in X.items()}
            if any(v is None for v in Xt.values()):
                return None
        else:
            Xt = self._as_tensor(X)
            if Xt is None:
                return None
        yt = None
        if y is not None:
            yt = self._as_tensor(y)
            if yt is None:
                return None
        if rows is not None:
            Xt = {k: v[rows] for k, v in Xt.items()} if isinstance(Xt, dict) else Xt[rows]
            yt = None if yt is None else yt[rows]
            return Xt, yt, len(rows)
        return Xt, yt, len(dataset)

    def __len__(self):
        if self._tensors is None:
            return len(self._loader)
        n = self._tensors[2]
        bs = self.batch_size or n
        return n // bs if self.drop_last else -(-n // bs)

    def __iter__(self):
        if self._tensors is None:
            yield from self._loader
            return
        X, y, n = self._tensors
        bs = self.batch_size or n
        order = torch.randperm(n) if self.shuffle else None
        stop = n - n % bs if self.drop_last else n
        for start in range(0, stop, bs):
            if order is None:
                idx = slice(start, min(start + bs, n))
            else:
                idx = order[start:start + bs]
            Xi = {k: v[idx] for k, v in X.items()} if isinstance(X, dict) else X[idx]
            # skorch's Dataset yields a zero placeholder when there is no target.
            yi = y[idx] if y is not None else torch.zeros(len(Xi if not isinstance(Xi, dict)
                                                            else next(iter(Xi.values()))))
            yield Xi, yi


_BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_grad_computed")


#: Optimizers whose ``step(closure)`` evaluates the closure exactly once, for which
#: :meth:`LeanNotifyMixin.train_step` calls it directly.
_ONE_EVALUATION = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.RMSprop,
                   torch.optim.Adagrad, torch.optim.Adamax, torch.optim.NAdam,
                   torch.optim.RAdam, torch.optim.Adadelta)


def _batch_len(batch):
    """Rows of a batch: its (first) tensor's length, or skorch's ``get_len``."""
    X = batch[0] if isinstance(batch, (tuple, list)) else batch
    if type(X) is torch.Tensor:
        return X.shape[0]
    if type(X) is dict and X:
        first = next(iter(X.values()))
        if type(first) is torch.Tensor and "input_ids" not in X:
            return first.shape[0]
    from skorch.dataset import get_len

    return get_len(X)



def _resolve_batch_losses(pending, key):
    """Write the batch losses kept on the device into their history entries as floats.

    One transfer (one synchronisation on a GPU) for the whole epoch instead of
    one ``.item()`` per batch.
    """
    if not pending:
        return
    values = torch.stack([loss.reshape(()).float() for _, loss in pending]).tolist()
    for (entry, _), value in zip(pending, values):
        entry[key] = value

class LeanNotifyMixin:
    """A skorch net mixin that does only the per-batch work something needs.

    For small networks skorch's per-batch bookkeeping costs a noticeable
    share of a step. This mixin, on every net of the package:

    * calls a per-batch hook only on the callbacks whose class overrides it
      (skorch calls three hooks of every callback on every batch; the net's
      own hooks, which keep the batch history, are always called);
    * sends a batch that is already a dict of CPU tensors for a CPU net
      straight to the module (skorch's ``infer`` would convert, move and
      check it again);
    * sets the training mode only when it changes (skorch walks every
      submodule on every batch);
    * reads a batch's size off its first tensor (:meth:`run_single_epoch`)
      and runs the step without a closure for the optimizers that need
      none (:meth:`train_step`);
    * keeps the batch losses on the device and writes them into the batch
      history once, at the end of the epoch, unless a callback implements
      ``on_batch_end`` (which may read the history while the epoch runs):
      one synchronisation per epoch on a GPU instead of one per batch.

    Epoch- and train-level hooks, the history and what callbacks see are
    unchanged.
    """

    def notify(self, method_name, **cb_kwargs):
        if method_name not in _BATCH_HOOKS:
            return super().notify(method_name, **cb_kwargs)
        getattr(self, method_name)(self, **cb_kwargs)
        for cb in self._callbacks_implementing(method_name):
            getattr(cb, method_name)(self, **cb_kwargs)
        return None

    def infer(self, x, **fit_params):
        # skorch converts and moves every batch and checks its keys against the
        # fit params; a dict of CPU tensors from the in-memory iterator, on a CPU
        # net without fit params, goes straight to the module
        if (not fit_params and type(x) is dict and self.device == "cpu"
                and all(type(v) is torch.Tensor and v.device.type == "cpu"
                        for v in x.values())):
            return self.module_(**x)
        return super().infer(x, **fit_params)

    def _set_training(self, training=True):
        # skorch sets the mode of every module (a walk over all submodules) on
        # every batch; skip it when the network is already in that mode
        module = self.__dict__.get("module_")
        if module is not None and module.training == training:
            return
        super()._set_training(training)

    def train_step(self, batch, **fit_params):
        """skorch's training step without the closure, for optimizers that need none.

        skorch hands the whole step to ``optimizer.step(closure)``, for the
        optimizers that evaluate the loss several times (L-BFGS). For those
        of :data:`_ONE_EVALUATION` the closure would run exactly once, so the
        step runs it directly: zero the gradients, ``train_step_single``,
        ``on_grad_computed`` (only when a callback implements it), then each
        optimizer's ``step()``. Any other optimizer, several optimizers, or
        an accelerator: skorch's step as it is.
        """
        optimizers = self._optimizers
        optimizer = getattr(self, optimizers[0] + "_", None) if len(optimizers) == 1 else None
        if type(optimizer) not in _ONE_EVALUATION or getattr(self, "accelerator", None):
            return super().train_step(batch, **fit_params)
        self._zero_grad_optimizer()
        step = self.train_step_single(batch, **fit_params)
        if self._callbacks_implementing("on_grad_computed"):
            from skorch.utils import TeeGenerator

            self.notify("on_grad_computed",
                        named_parameters=TeeGenerator(self.get_all_learnable_params()),
                        batch=batch)
        optimizer.step()
        return step

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """skorch's epoch loop, with the batch size read off the batch's first tensor.

        The same records and hooks as :meth:`skorch.NeuralNet.run_single_epoch`;
        skorch's ``get_len`` flattens and compares every entry of a dict
        batch, a sizeable share of a small network's step. The batch losses
        are floats in the history when the epoch ends (read in one transfer
        when no callback implements ``on_batch_end``), also when a batch
        raises.
        """
        if iterator is None:
            return
        history = self.history
        record = history.record_batch
        loss_key, size_key = prefix + "_loss", prefix + "_batch_size"
        batch_count = 0
        # Without a callback that could read a batch's loss while the epoch runs,
        # the losses stay on the device and are read in one go at the end.
        pending = None if self._callbacks_implementing("on_batch_end") else []
        try:
            for batch in iterator:
                self.notify("on_batch_begin", batch=batch, training=training)
                step = step_fn(batch, **fit_params)
                loss = step["loss"]
                if pending is not None and isinstance(loss, torch.Tensor):
                    record(loss_key, None)
                    pending.append((history[-1]["batches"][-1], loss.detach()))
                else:
                    record(loss_key, loss.item() if isinstance(loss, torch.Tensor)
                           else float(loss))
                record(size_key, _batch_len(batch))
                self.notify("on_batch_end", batch=batch, training=training, **step)
                batch_count += 1
        finally:
            _resolve_batch_losses(pending, loss_key)
        history.record(prefix + "_batch_count", batch_count)

    def _callbacks_implementing(self, method_name):
        from skorch.callbacks import Callback

        callbacks = self.callbacks_
        cache = self.__dict__.get("_hook_cache")
        if cache is None or cache[0] is not callbacks or cache[1] != len(callbacks):
            base = {name: getattr(Callback, name) for name in _BATCH_HOOKS}
            hooks = {name: [cb for _, cb in callbacks
                            if getattr(type(cb), name, None) is not base[name]]
                     for name in _BATCH_HOOKS}
            cache = (callbacks, len(callbacks), hooks)
            self.__dict__["_hook_cache"] = cache
        return cache[2][method_name]

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_hook_cache", None)
        return state


#: Optimizers whose ``fused=True`` implementation is used when the user sets none.
_FUSED_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)
#: What the user may have chosen instead (``net_params`` keys that switch fused off).
_OPTIMIZER_IMPLEMENTATION_KEYS = ("optimizer__fused", "optimizer__foreach",
                                  "optimizer__differentiable", "optimizer__capturable")


def _fused_optimizer_kwargs(optimizer, device, net_params):
    """``{"optimizer__fused": True}`` where PyTorch's fused Adam / AdamW applies.

    The fused kernel updates all parameters in one call instead of one small
    operation per tensor and step (on one CPU thread, a Conv4's Adam step
    takes about a fifth of the time of the default implementation). It is
    used for ``torch.optim.Adam`` and ``AdamW`` (exactly these classes) on
    CPU and CUDA, unless ``net_params`` chooses the implementation itself
    (``optimizer__fused``, ``optimizer__foreach``, ...). The update is the
    same Adam step; only the order of floating-point operations differs.
    """
    if optimizer not in _FUSED_OPTIMIZERS or device is None:
        return {}
    if any(key in (net_params or {}) for key in _OPTIMIZER_IMPLEMENTATION_KEYS):
        return {}
    kind = torch.device(device).type  # a validated device string or torch.device
    return {"optimizer__fused": True} if kind in ("cpu", "cuda") else {}


def _quiet(*args, **kwargs):
    """A print sink that prints nothing (module-level, so that nets pickle)."""


def _to_float32(out):
    if isinstance(out, torch.Tensor):
        return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out
    if isinstance(out, (tuple, list)):
        return type(out)(_to_float32(o) for o in out)
    return out


class AutocastMixin:
    """A skorch net mixin: forward passes under bfloat16 autocast for ``precision="bf16"``.

    With ``precision="bf16"`` every forward pass of the net (training,
    validation and prediction, through :meth:`infer`) runs in
    :func:`torch.autocast` with ``dtype=torch.bfloat16`` on the net's device
    type, and the outputs are cast back to float32 so that losses, task
    weightings and probabilities are computed in float32. Parameters,
    gradients and optimizer state stay float32 (mixed precision). bfloat16
    has float32's exponent range, so no loss scaling is needed, unlike
    float16. ``precision="fp32"`` (the default) changes nothing.

    Parameters
    ----------
    *args
        Positional arguments of the skorch net (the module first).
    precision : {"fp32", "bf16"}, default="fp32"
        ``"bf16"``: forward passes under bfloat16 autocast; ``"fp32"``: plain
        float32.
    **kwargs
        Keyword arguments of the skorch net.
    """

    def __init__(self, *args, precision="fp32", **kwargs):
        super().__init__(*args, **kwargs)
        self.precision = precision

    def autocast(self):
        """The autocast context of this net's precision (a no-op for ``"fp32"``)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        device_type = torch.device(self.device if self.device is not None else "cpu").type
        return torch.autocast(device_type, dtype=torch.bfloat16)

    def infer(self, x, **fit_params):
        if self.precision == "fp32":  # the hot path: nothing to do
            return super().infer(x, **fit_params)
        with self.autocast():
            out = super().infer(x, **fit_params)
        return _to_float32(out)


class NeuralEstimatorMixin(metaclass=ABCMeta):
    """Behaviour shared by every estimator that owns a private skorch net.

    It holds the one body of ``fit``, ``partial_fit`` and ``adapt``
    (:meth:`_run`); a family implements its hooks (``_encode``, ``_build``,
    ``_train``, ``_record``, ...) and its public methods are one-line wrappers
    that carry their signature and docstring. See the developer guide.

    Subclasses declare the common hyperparameters in their own ``__init__``
    (scikit-learn reads parameters from the signature of the concrete class)
    and their constraints in ``_parameter_constraints`` (usually through the
    :func:`parameter_constraints` class decorator):

    module : None, nn.Module class, factory or instance
        ``None`` builds the default network (an :class:`~sktransfer.modules.MLP`
        with ``hidden_layer_sizes`` for tabular data, a
        :class:`~sktransfer.modules.Conv4` for images, with fewer blocks for
        images smaller than 16x16). A class or factory is
        called with no arguments under the estimator's seed; an instance is
        deep-copied at every fit, so its weights are the starting point.
    hidden_layer_sizes : tuple of int
        Hidden widths of the default MLP.
    optimizer : torch optimizer class
        Default ``torch.optim.Adam``.
    lr : float
        Learning rate.
    max_epochs : int
        Epochs per ``fit``.
    batch_size : int
        Mini-batch size (-1 for full batch).
    callbacks : list of skorch callbacks or None
        Passed through to the skorch net.
    train_split : None or skorch split
        ``None`` trains on everything (the default); e.g.
        ``skorch.dataset.ValidSplit(0.2)`` records validation losses.
    device : {"cpu", "cuda", "auto"}
        ``"auto"`` picks CUDA when available.
    random_state : int, RandomState or None
        Seeds weight initialisation, shuffling and dropout; two fits with the
        same integer seed give identical predictions. The global torch RNG
        is left as it was.
    verbose : int
        0 is silent; 1 prints skorch's progress bar and epoch table.
    net_params : dict or None
        Forwarded verbatim to the skorch net (e.g. ``{"optimizer__weight_decay":
        1e-4}``), for anything not exposed as a hyperparameter.
    precision : {"fp32", "bf16"}
        Only on the estimators whose training step allows it (multi-task,
        transfer and continual). ``"bf16"`` runs the forward passes in
        bfloat16 mixed precision (see :class:`AutocastMixin`); ``"fp32"``,
        the default, trains in float32.
    early_stopping : bool
        Only on the estimators that train by epochs (multi-task, transfer,
        continual, Baseline). ``True`` stops training when the validation
        loss stops improving, as in scikit-learn's ``MLPClassifier``:
        ``validation_fraction`` of the rows (the split of ``train_split``
        instead, if one is given) are held out, training stops once the
        validation loss has not improved by at least ``tol`` for
        ``n_iter_no_change`` epochs, and the weights of the best epoch are
        restored. The split is drawn from ``random_state``. The continual
        estimators apply it to each task, ``FineTuner`` to each call.
    validation_fraction : float
        Share of the rows held out by ``early_stopping`` (default 0.1).
    n_iter_no_change : int
        Epochs without improvement before ``early_stopping`` stops (default 10).
    tol : float
        Smallest decrease of the validation loss that counts as improvement
        (default 1e-4).
    accelerator : None or accelerate.Accelerator
        Only on the multi-task and continual estimators. Train through
        Hugging Face Accelerate (skorch's
        :class:`~skorch.hf.AccelerateMixin`): the accelerator chooses the
        device (``device`` is then ignored) and the mixed precision, and under
        ``accelerate launch`` or ``torchrun`` with several processes trains
        data parallel. See the "Scaling" page of the user guide.
    """

    #: scikit-learn's constraints of the constructor parameters, checked at the start of
    #: every fit / partial_fit / adapt; each estimator sets its own (from
    #: :data:`COMMON_PARAMETER_CONSTRAINTS` plus its family's parameters).
    _parameter_constraints = {}

    # ============================================================ the template
    # ``fit``, ``partial_fit`` and ``adapt`` of every family are one-line wrappers
    # around :meth:`_run`; a family implements the hooks below it.
    def _run(self, call, X, y=None, **metadata):
        """The one body of ``fit``, ``partial_fit`` and ``adapt``.

        1. check the constructor parameters (``_parameter_constraints``, then
           :meth:`_validate_strategies`);
        2. inside an atomic section (any exception restores the estimator
           exactly as it was, see :meth:`_rollback`): validate and encode the
           data (:meth:`_encode`);
        3. seed (one rule, see :meth:`_call_seed`) and, for a new model, build
           the network (:meth:`_build`) and dry-run a tiny batch through it
           (:meth:`_dry_run_example`), so that a module that does not fit the
           data is a ``ValueError`` naming the shapes;
        4. train (:meth:`_train`) and record the fitted state (:meth:`_record`),
           whose return value is returned (``self``, or the adapted copy).
        """
        if not get_config().get("skip_parameter_validation", False):
            self._validate_params()
        self._validate_strategies()
        new_model = self._starts_new_model(call)
        if not new_model:
            check_is_fitted(self, self._fitted_attribute)
        with self._rollback(deep=not new_model and call != "adapt"):
            ctx = self._call_context(call, new_model)
            if new_model:
                self._reset_fitted()
            data = self._encode(ctx, X, y, **metadata)
            ctx.seed = self._call_seed(ctx)
            with self._seeded(ctx.seed, ctx.device):
                if new_model:
                    net = self._build_checked(ctx, data)
                else:
                    net = getattr(self, "net_", None)
                if call != "adapt":
                    self._start_unit(ctx)
                result = self._train(ctx, net, data)
            return self._record(ctx, net, data, result)

    # ------------------------------------------------------------ the hooks
    #: The attribute that marks a fitted estimator.
    _fitted_attribute = "net_"

    def _validate_strategies(self):
        """Check the parameters of the strategy objects given as hyperparameters.

        Every hyperparameter value (or item of a list of them) that is a
        scikit-learn-style configuration object without ``fit`` (a weighting,
        an architecture, a continual strategy) is checked against its own
        ``_parameter_constraints``.
        """
        for value in self.get_params(deep=False).values():
            items = value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                if isinstance(item, BaseEstimator) and not hasattr(item, "fit"):
                    item._validate_params()

    def _starts_new_model(self, call):
        """Whether ``call`` builds a new model: ``fit``, and a first ``partial_fit``."""
        if call == "fit":
            return True
        if call == "partial_fit":
            return not hasattr(self, self._fitted_attribute)
        return False

    def _call_context(self, call, new_model):
        """Device and default-network widths of this call."""
        if new_model:
            device, sizes = self._check_common_params()
        else:
            device, sizes = self._fitted_device(), None
        return _Call(call, new_model, device, sizes)

    def _fitted_device(self):
        """The device a fitted model trains and predicts on."""
        return str(self.net_.device)

    @abstractmethod
    def _encode(self, ctx, X, y, **metadata):
        """Validate and encode the data of this call; must not change the model.

        Returns whatever :meth:`_build`, :meth:`_train` and :meth:`_record` need.
        """

    @abstractmethod
    def _build(self, ctx, data):
        """The new (private skorch) net, built under the call's seed."""

    def _dry_run_example(self, ctx, net, data):
        """``(forward, example)``: the template runs ``forward(example)`` on a tiny
        batch right after :meth:`_build`; ``None`` when building already ran one."""
        return None

    @abstractmethod
    def _train(self, ctx, net, data):
        """Train ``net`` (or adapt); the return value goes to :meth:`_record`."""

    def _record(self, ctx, net, data, result):
        """Set the fitted attributes; returns what the public method returns."""
        return self

    def _shared_in_rollback(self, net):
        """Objects the rollback snapshot of ``net`` keeps by reference, not copied.

        Only what the training never changes in place may be shared: the
        accelerator, and data tensors a strategy only ever rebinds.
        """
        accelerator = getattr(net, "accelerator", None)
        return [] if accelerator is None else [accelerator]

    # --------------------------------------------------------- the machinery
    def _build_checked(self, ctx, data):
        sample_shape = getattr(self, "input_shape_", None) or ()
        with _module_fits(self, sample_shape, self.module if hasattr(self, "module") else None):
            net = self._build(ctx, data)
            example = self._dry_run_example(ctx, net, data)
            if example is not None:
                forward, inputs = example
                modules = [m for m in (getattr(net, "module", None),)
                           if isinstance(m, nn.Module)]
                # the dry run goes where the module is: a net that is not
                # initialized yet still has its module on the CPU
                param = next((p for m in modules for p in m.parameters()
                              if not nn.parameter.is_lazy(p)), None)
                if param is not None:
                    device = param.device
                else:
                    device = ctx.device if getattr(net, "initialized_", False) else "cpu"
                infer_in_chunks(forward, inputs, device, modules=modules)
        return net

    def _reset_fitted(self):
        """Forget a previous fit: every public fitted attribute and the seed state."""
        for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, key)
        for key in ("_seed", "_n_units"):
            self.__dict__.pop(key, None)

    def _call_seed(self, ctx):
        """The one seeding rule.

        A new model draws ``seed`` from ``random_state`` (an integer gives the
        same seed at every fit); its build and its first training unit run on
        the stream ``seed``, and training unit ``i`` (the ``i``-th
        ``partial_fit`` call after the first, or the ``i``-th task of a
        continual ``fit``) on ``derive_seed(seed, i)``. ``adapt`` runs on a
        stream of its own, the same at every call, so adapting twice to the
        same support set gives the same model.
        """
        if ctx.new_model:
            self._seed = self._draw_seed()
            self._n_units = 0
            return self._seed
        if "_seed" not in vars(self) or "_n_units" not in vars(self):
            # fitted (and pickled) by a release before the one seed rule
            self.__dict__.setdefault("_seed", self._draw_seed())
            self.__dict__.setdefault("_n_units", max(1, getattr(self, "n_experiences_", 1)))
        if ctx.name == "adapt":
            return derive_seed(self._seed, _ADAPT_STREAM)
        return derive_seed(self._seed, self._n_units)

    def _start_unit(self, ctx):
        """Begin the next training unit (see :meth:`_call_seed`).

        The template starts one per ``fit`` / ``partial_fit`` call; a family that
        trains several units in one call (a continual ``fit`` over its tasks)
        calls it again before each further unit, which reseeds the stream.
        """
        if ctx.units:
            seed = derive_seed(self._seed, self._n_units)
            torch.manual_seed(seed)
        ctx.units += 1
        self._n_units += 1

    @contextlib.contextmanager
    def _rollback(self, deep):
        """Restore the estimator exactly as it was if the block raises.

        The attributes are restored from a shallow copy of ``__dict__`` (the
        template only rebinds them). With ``deep`` (a call that trains an
        existing model in place), the fitted net's own attributes are
        snapshotted too: a deep copy of the module, optimizer state and
        strategy state, that is of the state dicts, not of the data (see
        :meth:`_shared_in_rollback`); the history is cut back to its length
        (and its last row restored), and the callbacks' attributes are
        restored in place, so these cost the same after 10 calls or 10,000.
        """
        saved = self.__dict__.copy()
        net = saved.get("net_") if deep else None
        # Callbacks are the user's objects, which skorch trains with as they are:
        # they are restored in place, so that the net and the user keep holding
        # the same ones (one that cannot be copied, holding a file or a writer, is
        # left as it is).
        callbacks = list(getattr(self, "callbacks", None) or [])
        if net is not None:
            callbacks += [cb for _, cb in getattr(net, "callbacks_", None) or []]
        callback_states, seen = [], set()
        for callback in callbacks:
            if isinstance(callback, type) or id(callback) in seen:
                continue
            seen.add(id(callback))
            try:
                callback_states.append((callback, copy.deepcopy(vars(callback))))
            except Exception:  # noqa: BLE001 - not copyable: not restored
                pass
        net_state = history = None
        if net is not None:
            memo = {id(obj): obj for obj in self._shared_in_rollback(net)}
            memo.update((id(cb), cb) for cb, _ in callback_states)
            # the history only grows by new epochs (and the row of the current
            # one): keep it, with its length and a copy of its last row
            history = getattr(net, "history_", None)
            if history is not None:
                memo[id(history)] = history
                history_len = len(history)
                last_row = copy.deepcopy(history[-1]) if history_len else None
            net_state = copy.deepcopy(net.__dict__, memo)
        try:
            yield
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            if net_state is not None:
                net.__dict__.clear()
                net.__dict__.update(net_state)
            if history is not None:
                del history[history_len:]
                if history_len:
                    history[history_len - 1] = last_row
            for callback, state in callback_states:
                vars(callback).clear()
                vars(callback).update(state)
            raise

    # ------------------------------------------------------------------ params
    def _check_common_params(self):
        """Device and default-MLP widths from the shared parameters.

        Types and ranges are checked by ``_parameter_constraints``; what is
        left are the checks that combine parameters or read the machine.
        """
        precision = getattr(self, "precision", "fp32")
        from ._accelerate import check_accelerator

        accelerator = check_accelerator(getattr(self, "accelerator", None))
        sizes = getattr(self, "hidden_layer_sizes", ())
        if isinstance(sizes, (int, np.integer)):
            sizes = (sizes,)
        try:
            sizes = tuple(int(s) for s in sizes)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"hidden_layer_sizes must be a sequence of ints, got {self.hidden_layer_sizes!r}"
            ) from exc
        if any(s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive, got {sizes}")
        if accelerator is not None:
            if precision != "fp32":
                raise ValueError(
                    f"precision={precision!r} and an accelerator were both given: with an "
                    "accelerator, mixed precision is the Accelerator's (for example "
                    "Accelerator(mixed_precision='bf16') or accelerate launch "
                    "--mixed_precision bf16); leave precision='fp32'")
            # the accelerator places the model: its device, not the device parameter
            device = torch.device(accelerator.device)
            return ("cpu" if device.type == "cpu" else str(device)), sizes
        return resolve_device(self.device), sizes

    # -------------------------------------------------------------- validation
    def _validate_X(self, X, reset):
        """Validate features to float32; images stay (n, C, H, W)."""
        X = validate_data(self, X, reset=reset, dtype=np.float32, allow_nd=True,
                          ensure_min_samples=1)
        if X.ndim not in (2, 4):
            raise ValueError(
                f"X must be 2-D (n_samples, n_features) or 4-D images (n, C, H, W); "
                f"got an array of shape {X.shape}"
            )
        if not reset and X.shape[1:] != tuple(self.input_shape_):
            raise ValueError(
                f"X has sample shape {X.shape[1:]}, but {type(self).__name__} was fitted on "
                f"sample shape {tuple(self.input_shape_)}"
            )
        if reset:
            self.input_shape_ = tuple(X.shape[1:])
        return X

    # ----------------------------------------------------------------- seeding
    def _draw_seed(self):
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    @contextlib.contextmanager
    def _seeded(self, seed, device="cpu"):
        """A private torch RNG stream seeded with ``seed``, the thread policy and,
        on the CPU, the allocator policy (:func:`sktransfer._allocator.keep_freed_memory`).

        The global generator is forked (left as it was after the block) and the
        section holds the package's RNG lock, so that two fits in two threads
        of one process do not draw from each other's stream.
        """
        memory = keep_freed_memory() if str(device) == "cpu" else contextlib.nullcontext()
        with _RNG_LOCK, memory, torch_threads(
                None if device == "cpu" else torch.get_num_threads(), force=True):
            devices = []
            if str(device).startswith("cuda"):
                dev = torch.device(device)
                devices = [dev.index if dev.index is not None else torch.cuda.current_device()]
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed)
                yield

    def _torch_context(self, device="cpu"):
        """The thread policy of unseeded work (prediction) on ``device``."""
        return torch_threads(None if device == "cpu" else torch.get_num_threads())

    # -------------------------------------------------------------- the module
    def _make_trunk(self, sample_shape, hidden_layer_sizes):
        """Instantiate the user's module, or the default trunk for samples of this shape."""
        import copy

        from torch import nn

        from .modules import MLP, Conv4

        module = self.module
        if module is None:
            if len(sample_shape) == 3:
                # Four blocks halve 28x28 to 1x1; smaller images get fewer blocks.
                side = min(sample_shape[1:])
                n_blocks = int(min(4, max(1, np.floor(np.log2(max(side, 2))))))
                return Conv4(in_channels=sample_shape[0], n_blocks=n_blocks,
                             image_size=tuple(sample_shape[1:]))
            return MLP(int(np.prod(sample_shape)), hidden_layer_sizes)
        if isinstance(module, nn.Module):
            return copy.deepcopy(module)
        if callable(module):
            return call_module_factory(
                module, "module must be an nn.Module, an nn.Module class or a factory "
                "returning one")
        raise TypeError(
            f"module must be None, an nn.Module instance, class or factory; got {type(module)}"
        )

    def _net_kwargs(self, device):
        """Keyword arguments for the private skorch net from the common params."""
        from skorch.callbacks import ProgressBar

        callbacks = list(self.callbacks) if self.callbacks else []
        if self.verbose and self.verbose >= 1:
            callbacks.append(ProgressBar())
        train_split = self.train_split
        if getattr(self, "early_stopping", False):
            train_split, stopper = self._early_stopping(train_split)
            callbacks.append(("early_stopping", stopper))
        kwargs = dict(
            optimizer=self.optimizer,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            callbacks=callbacks or None,
            train_split=train_split,
            device=device,
            verbose=int(bool(self.verbose)),
            iterator_train=_FastBatchIterator,
            iterator_valid=_FastBatchIterator,
            iterator_train__shuffle=True,
        )
        if hasattr(self, "precision"):  # estimators whose net has AutocastMixin
            kwargs["precision"] = self.precision
        if getattr(self, "accelerator", None) is not None:
            # Accelerate places the model (skorch wants device=None) and shards a
            # DataLoader across processes, which the in-memory iterator is not
            kwargs.update(accelerator=self.accelerator, device=None)
            if not self.verbose:  # skorch prints through the accelerator whatever verbose
                kwargs["callbacks__print_log__sink"] = _quiet
            del kwargs["iterator_train"], kwargs["iterator_valid"]
        # with an accelerator, the device it places the model on decides
        placed = (kwargs["device"] if kwargs["device"] is not None
                  else getattr(getattr(self, "accelerator", None), "device", None))
        kwargs.update(_fused_optimizer_kwargs(self.optimizer, placed, self.net_params))
        kwargs.update(self.net_params or {})
        return kwargs

    def _early_stopping(self, train_split):
        """The validation split and the callback of ``early_stopping=True``.

        As in scikit-learn's ``MLPClassifier``: ``validation_fraction`` of the
        training rows (``train_split`` instead, when one is given) are held
        out, training stops once the validation loss has not improved by at
        least ``tol`` for ``n_iter_no_change`` epochs, and the weights of the
        best epoch are restored. The split is drawn from the call's seed.
        """
        from skorch.callbacks import EarlyStopping
        from skorch.dataset import ValidSplit

        if train_split is None:
            seed = int(torch.randint(np.iinfo(np.int32).max, ()).item())
            train_split = ValidSplit(float(self.validation_fraction), random_state=seed)
        stopper = EarlyStopping(monitor="valid_loss", patience=int(self.n_iter_no_change),
                                threshold=float(self.tol), threshold_mode="abs",
                                load_best=True, sink=print if self.verbose else _quiet)
        return train_split, stopper

    # ------------------------------------------------------------ transfer
    def get_pretrained_module(self):
        """The fitted network, to be handed over as the source of transfer learning.

        :class:`~sktransfer.transfer.FineTuner` calls it for
        ``pretrained=FrozenEstimator(fitted)``. The default hands over the
        whole trained module with its output layer; an estimator whose
        network is a shared feature extractor with task-specific outputs
        (a multi-task model) hands over the extractor alone.

        Returns
        -------
        module : nn.Module
            A deep copy, owned by the caller.
        has_output_layer : bool
            Whether ``module`` ends in the model's output layer (which a
            fine-tuner replaces), rather than in features (on which it adds
            a head).
        """
        return copy.deepcopy(self._fitted_module()), True

    def _fitted_module(self):
        """The trained ``nn.Module`` (the private net's ``module_``); raises if unfitted."""
        check_is_fitted(self, self._fitted_attribute)
        return self.net_.module_

    # --------------------------------------------------------------- weights
    def save_weights(self, path):
        """Save the fitted network's weights to ``path``.

        A path ending in ``.safetensors`` is written with safetensors; any
        other path with ``torch.save`` of a plain state dict (tensors only),
        which :meth:`load_weights` reads back with ``weights_only=True``.

        Parameters
        ----------
        path : str or path-like
            The file to write (replaced if it exists).
        """
        state = {k: v.detach().cpu().contiguous() for k, v in
                 self._fitted_module().state_dict().items()}
        if str(path).endswith(".safetensors"):
            from safetensors.torch import save_file

            save_file(state, str(path))
        else:
            torch.save(state, path)

    def load_weights(self, path):
        """Load weights saved by :meth:`save_weights` into the fitted network.

        Files are never unpickled: safetensors files are read as tensors, and
        other files with ``torch.load(..., weights_only=True)``, which refuses
        arbitrary Python objects.

        Parameters
        ----------
        path : str or path-like
            A file written by :meth:`save_weights` (a ``.safetensors`` file or
            a torch state dict) whose keys and shapes match the fitted
            network.

        Returns
        -------
        self
            The estimator, with the loaded weights.

        Raises
        ------
        ValueError
            If the file cannot be read safely or does not match the network.
        """
        module = self._fitted_module()
        state = load_state_dict(path)
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(
                f"the weights in {path!s} do not match this estimator's network: {exc}"
            ) from exc
        return self


def call_module_factory(factory, what):
    """Call ``factory()`` and check it returned an ``nn.Module``.

    ``what`` starts the ``TypeError`` raised otherwise (it says what was expected).
    """
    from torch import nn

    out = factory()
    if not isinstance(out, nn.Module):
        raise TypeError(f"{what}; calling {factory!r} returned {type(out).__name__}")
    return out


def load_state_dict(path, map_location="cpu"):
    """Read a state dict from a safetensors or torch file without unpickling.

    Parameters
    ----------
    path : str or path-like
        A ``.safetensors`` file, or a file of ``torch.save`` of a state dict
        (read with ``weights_only=True``).
    map_location : str or torch.device, default="cpu"
        Where the tensors are loaded.

    Returns
    -------
    dict of str to torch.Tensor
        The state dict.

    Raises
    ------
    ValueError
        If the file does not exist, is truncated or of another format, holds
        pickled Python objects, or holds something other than a dict.
    """
    path = str(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        if not os.path.isfile(path):
            raise ValueError(f"{path} does not exist or is not a file")
        try:
            return load_file(path, device=str(map_location))
        except Exception as exc:  # safetensors.SafetensorError, OSError, ...
            raise ValueError(
                f"{path} is not a valid safetensors file (it may be truncated or another "
                f"format): {exc}") from exc
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError, KeyError, EOFError, ...
        # torch's own message carries terminal colour codes and advises
        # weights_only=False (running the file's code): neither is passed on
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if found:
            raise ValueError(
                f"{path} holds pickled Python objects (a {found.group(1)}), for example a "
                "whole module saved with torch.save(model); a weights file is never unpickled, "
                "since that can run arbitrary code. Save the weights instead: "
                "torch.save(model.state_dict(), path), or "
                "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')"
            ) from None
        detail = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
        if detail and detail.group(1).strip():
            reason = detail.group(1).strip()
        elif isinstance(exc, pickle.UnpicklingError):
            reason = "its content is not a torch state dict"
        else:
            first = text.strip().splitlines()[0] if text.strip() else "empty or truncated"
            reason = f"{type(exc).__name__}: {first}"
        raise ValueError(
            f"{path} is not a weights file that can be loaded safely (safetensors, or a torch "
            f"state dict readable with weights_only=True); it is never unpickled ({reason})"
        ) from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state
