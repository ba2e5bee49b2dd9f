"""Contract checks that every sktransfer estimator must pass.

scikit-learn's :func:`~sklearn.utils.estimator_checks.parametrize_with_checks`
checks the scikit-learn side of an estimator; the checks here check the
promises the shared skeleton (:class:`sktransfer.base.NeuralEstimatorMixin`)
makes for every family:

* :func:`check_non_finite_params`: NaN and infinity are invalid wherever a
  finite number is meant, and the estimator is left unfitted;
* :func:`check_global_rng_untouched`: fitting (and adapting) leaves torch's
  process-wide generator as it was;
* :func:`check_module_mismatch`: a network that does not fit the data is a
  ``ValueError`` naming the shapes, raised before anything is trained;
* :func:`check_rollback`: a call that fails mid-training (here: an exception
  from a callback) leaves the estimator exactly as it was, and the next call
  gives what it would have given had the failed call never happened;
* :func:`check_threads_reproducible`: the same integer ``random_state`` gives
  bit-identical models whether fits run one after another or in two threads
  at once;
* :func:`check_seed_reproducible`: the same integer ``random_state`` gives a
  bit-identical model at every fit, another one another model;
* :func:`check_pickle_round_trip`: a pickled fitted estimator is the same
  model, and keeps training exactly as the original would.

Each check takes a configured (unfitted) estimator and data it can be fitted
on, and raises ``AssertionError`` when the promise does not hold. A new
estimator, or a new family, passes them all before it lands.
"""

import pickle
import threading
from numbers import Real

import numpy as np
import torch
from sklearn.base import clone
from sklearn.utils._param_validation import Interval, InvalidParameterError, make_constraint
from skorch.callbacks import Callback

__all__ = [
    "FailingCallback",
    "check_global_rng_untouched",
    "check_module_mismatch",
    "check_non_finite_params",
    "check_pickle_round_trip",
    "check_rollback",
    "check_seed_reproducible",
    "check_threads_reproducible",
    "fingerprint",
]


class FailingCallback(Callback):
    """A skorch callback that raises ``RuntimeError`` at one point of training.

    It counts the training runs it sees (``on_train_begin``), their epochs and
    the batches of each epoch, and raises in batch ``batch`` of epoch
    ``epoch`` of run ``run`` (all 1-based) while the class attribute
    ``armed`` is true.

    Parameters
    ----------
    run : int, default=2
        The training run (skorch ``fit`` or ``partial_fit`` of the net) that
        fails.
    epoch : int, default=2
        The epoch of that run that fails.
    batch : int, default=1
        The training batch of that epoch at whose end it raises.
    """

    armed = True

    def __init__(self, run=2, epoch=2, batch=1):
        self.run = run
        self.epoch = epoch
        self.batch = batch

    def initialize(self):
        self.runs_ = getattr(self, "runs_", 0)
        self.epochs_ = 0
        self.batches_ = 0
        return self

    def on_train_begin(self, net, **kwargs):
        self.runs_ += 1
        self.epochs_ = 0

    def on_epoch_begin(self, net, **kwargs):
        self.epochs_ += 1
        self.batches_ = 0

    def on_batch_end(self, net, **kwargs):
        self.batches_ += 1
        if (type(self).armed and self.runs_ == self.run and self.epochs_ == self.epoch
                and self.batches_ == self.batch):
            raise RuntimeError(f"FailingCallback: run {self.run}, epoch {self.epoch}, "
                               f"batch {self.batch}")


# ----------------------------------------------------------------- fingerprints
def _flatten(value, out, prefix, depth=0):
    """Every tensor, array and plain value reachable from ``value``, by path."""
    if depth > 6:
        return
    if isinstance(value, torch.Tensor):
        out[prefix] = value.detach().cpu().clone()
    elif isinstance(value, np.ndarray):
        out[prefix] = value.copy()
    elif isinstance(value, (bool, int, float, str, type(None), np.generic)):
        out[prefix] = value
    elif isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, out, f"{prefix}[{k!r}]", depth + 1)
    elif isinstance(value, (list, tuple)):
        out[prefix + ".len"] = len(value)
        for i, v in enumerate(value):
            _flatten(v, out, f"{prefix}[{i}]", depth + 1)
    elif isinstance(value, torch.nn.Module):
        for k, v in value.state_dict().items():
            out[f"{prefix}.{k}"] = v.detach().cpu().clone()
    elif hasattr(value, "__dict__") and type(value).__module__.startswith("sktransfer"):
        for k, v in vars(value).items():
            _flatten(v, out, f"{prefix}.{k}", depth + 1)


def fingerprint(estimator, X, **predict_params):
    """The observable state of a fitted estimator, as a dict of plain values.

    The predictions (or embedding) on ``X``; every fitted attribute; and for
    the private skorch net, the module's state dict (weights, buffers, masks),
    the optimizer's state, the history and the strategy plugins' state.

    Parameters
    ----------
    estimator : estimator
        A fitted sktransfer estimator.
    X : array-like
        Data for its ``predict_proba``, ``transform`` or ``predict`` (the
        first it has).
    **predict_params : dict
        Keyword arguments of that method (e.g. ``task_ids``).

    Returns
    -------
    dict
        Path of every value (``"output"``, ``"classes_"``,
        ``"net_.module_.<name>"``, ...) -> a copy of it: tensors, arrays and
        plain Python values.
    """
    out = {}
    for name in ("predict_proba", "transform", "predict"):
        if hasattr(estimator, name):
            out["output"] = np.asarray(getattr(estimator, name)(X, **predict_params))
            break
    for key, value in vars(estimator).items():
        if key == "net_":
            continue
        _flatten(value, out, key)
    net = getattr(estimator, "net_", None)
    if net is not None:
        _flatten(net.module_, out, "net_.module_")
        optimizer = getattr(net, "optimizer_", None)
        if optimizer is not None:
            _flatten(optimizer.state_dict(), out, "net_.optimizer_")
        _flatten(list(net.history), out, "net_.history")
        for i, plugin in enumerate(getattr(net, "plugins", ())):
            _flatten(vars(plugin), out, f"net_.plugins[{i}]")
    return out


def _assert_same(a, b, what):
    missing = set(a) ^ set(b)
    assert not missing, f"{what}: entries differ: {sorted(missing)[:10]}"
    for key in a:
        x, y = a[key], b[key]
        if key.endswith("['dur']"):
            continue  # epoch durations
        if isinstance(x, torch.Tensor):
            same = x.shape == y.shape and x.dtype == y.dtype and (
                bool(torch.equal(x, y)) if not x.is_floating_point()
                else bool(torch.equal(torch.nan_to_num(x, nan=7.0), torch.nan_to_num(y, nan=7.0)))
                and bool(torch.equal(x.isnan(), y.isnan())))
        elif isinstance(x, np.ndarray):
            same = x.shape == y.shape and (np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
                                           if x.dtype != object else
                                           all(np.array_equal(p, q) for p, q in zip(x, y)))
        elif isinstance(x, float) and np.isnan(x):
            same = isinstance(y, float) and np.isnan(y)
        else:
            same = x == y
        assert same, f"{what}: {key} differs: {x!r} vs {y!r}"


# ----------------------------------------------------------------------- checks
def check_non_finite_params(estimator, X, y, fit_params=None):
    """NaN and inf are rejected for every parameter constrained to a real interval.

    For each such parameter, NaN, inf and -inf in turn must make ``fit``
    raise an ``InvalidParameterError`` that names the parameter, and leave no
    fitted attribute behind.

    Parameters
    ----------
    estimator : estimator
        A configured, unfitted sktransfer estimator; it is cloned, never fitted
        itself.
    X : array-like
        Data the estimator can be fitted on.
    y : array-like or None
        Its target.
    fit_params : dict or None, default=None
        Keyword arguments of ``fit`` (e.g. ``task_ids``).
    """
    fit_params = fit_params or {}
    for name, constraints in estimator._parameter_constraints.items():
        if constraints == "no_validation":
            continue
        made = [make_constraint(c) for c in constraints]
        if not any(isinstance(c, Interval) and c.type in (Real,) or
                   isinstance(c, Interval) and getattr(c.type, "__name__", "") == "RealNotInt"
                   for c in made):
            continue
        for bad in (np.nan, np.inf, -np.inf):
            est = clone(estimator).set_params(**{name: bad})
            try:
                est.fit(X, y, **fit_params)
            except InvalidParameterError as exc:
                assert name in str(exc), f"{name}={bad}: the message does not name it: {exc}"
            else:
                raise AssertionError(f"{type(estimator).__name__}({name}={bad}) was accepted")
            assert not any(k.endswith("_") and not k.startswith("__") for k in vars(est)), (
                f"{name}={bad}: the failed fit left fitted attributes behind")


def check_global_rng_untouched(estimator, X, y, fit_params=None, adapt=None):
    """Fitting (and adapting) leaves torch's global random state as it was.

    Parameters
    ----------
    estimator : estimator
        A configured, unfitted sktransfer estimator; it is cloned, never fitted
        itself.
    X : array-like
        Data the estimator can be fitted on.
    y : array-like or None
        Its target.
    fit_params : dict or None, default=None
        Keyword arguments of ``fit`` (e.g. ``task_ids``).
    adapt : tuple or None, default=None
        ``(X_support, y_support)``: also call ``adapt`` on them after
        ``fit`` (few-shot estimators).
    """
    before = torch.random.get_rng_state()
    est = clone(estimator).fit(X, y, **(fit_params or {}))
    if adapt is not None:
        est.adapt(*adapt)
    assert torch.equal(before, torch.random.get_rng_state()), (
        f"{type(estimator).__name__} changed torch's global random state")


def check_module_mismatch(estimator, X, y, fit_params=None, param="module"):
    """A network whose input does not match X: a clear ValueError, nothing fitted.

    The estimator gets a small MLP that expects 3 more input features than
    ``X`` has; ``fit`` must raise a ``ValueError`` naming both shapes and
    leave no network behind.

    Parameters
    ----------
    estimator : estimator
        A configured, unfitted sktransfer estimator; it is cloned, never fitted
        itself.
    X : array-like
        Data the estimator can be fitted on.
    y : array-like or None
        Its target.
    fit_params : dict or None, default=None
        Keyword arguments of ``fit`` (e.g. ``task_ids``).
    param : str, default="module"
        The parameter that takes the network (``"pretrained"`` for a
        fine-tuner).
    """
    n_features = int(np.prod(X.shape[1:]))
    wrong = n_features + 3
    bad = torch.nn.Sequential(torch.nn.Linear(wrong, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    est = clone(estimator).set_params(**{param: bad})
    try:
        est.fit(X, y, **(fit_params or {}))
    except ValueError as exc:
        message = str(exc)
        assert str(wrong) in message and (str(n_features) in message
                                          or str(tuple(X.shape[1:])) in message), (
            f"{type(estimator).__name__}: the error does not name the expected ({wrong}) "
            f"and actual ({X.shape[1:]}) shapes: {message}")
    else:
        raise AssertionError(f"{type(estimator).__name__} accepted a module that does not "
                             f"fit X")
    assert not hasattr(est, "net_") and not hasattr(est, "module_"), (
        "the failed fit left a network behind")


def check_rollback(estimator, first, second, X_check, run=2, epoch=2, batch=1,
                   predict_params=None):
    """A call that fails mid-training changes nothing, and the retry is unaffected.

    ``first`` and ``second`` are ``(method, args, kwargs)``: two calls (``fit``,
    ``partial_fit``), the second of which fails through a
    :class:`FailingCallback` at ``run`` / ``epoch`` / ``batch``. The estimator
    must come out of the failed call with the same :func:`fingerprint`, and a
    retry of the second call must give the same model as on an estimator
    whose second call never failed.

    Parameters
    ----------
    estimator : estimator
        A configured, unfitted sktransfer estimator; it is cloned.
    first : tuple
        ``(method, args, kwargs)`` of the first call, which succeeds.
    second : tuple
        ``(method, args, kwargs)`` of the second call, which fails.
    X_check : array-like
        Data whose predictions are part of the compared :func:`fingerprint`.
    run : int, default=2
        The training run of the skorch net in which the second call fails.
    epoch : int, default=2
        The epoch of that run that fails.
    batch : int, default=1
        The batch of that epoch that fails.
    predict_params : dict or None, default=None
        Keyword arguments of the predictions compared (e.g. ``task_ids``).
    """
    predict_params = predict_params or {}
    def call(est, spec):
        method, args, kwargs = spec
        return getattr(est, method)(*args, **kwargs)

    callbacks = list(estimator.get_params()["callbacks"] or [])
    failing = FailingCallback(run=run, epoch=epoch, batch=batch)
    est = clone(estimator).set_params(callbacks=callbacks + [failing])
    reference = clone(est)
    try:
        FailingCallback.armed = False
        call(reference, first)
        call(reference, second)
        FailingCallback.armed = True
        call(est, first)
        before = fingerprint(est, X_check, **predict_params)
        objects = dict(vars(est))
        try:
            call(est, second)
        except RuntimeError as exc:
            assert "FailingCallback" in str(exc), f"another error was raised: {exc!r}"
        else:
            raise AssertionError("the failing callback never fired: nothing was tested")
        assert set(vars(est)) == set(objects), "the failed call added or removed attributes"
        assert all(vars(est)[k] is v for k, v in objects.items()), (
            "the failed call rebound attributes")
        _assert_same(before, fingerprint(est, X_check, **predict_params), "after a failed call")
        FailingCallback.armed = False
        call(est, second)
        _assert_same(fingerprint(reference, X_check, **predict_params),
                     fingerprint(est, X_check, **predict_params), "a retry after a failed call")
    finally:
        FailingCallback.armed = True


def check_threads_reproducible(estimator, X, y, fit_params=None):
    """Two fits with the same integer seed in two threads equal the sequential fit.

    Parameters
    ----------
    estimator : estimator
        A configured, unfitted sktransfer estimator with an integer
        ``random_state``; it is cloned, never fitted itself.
    X : array-like
        Data the estimator can be fitted on.
    y : array-like or None
        Its target.
    fit_params : dict or None, default=None
        Keyword arguments of ``fit`` (e.g. ``task_ids``).
    """
    fit_params = fit_params or {}
    sequential = clone(estimator).fit(X, y, **fit_params)
    expected = fingerprint(sequential, X)
    ests = [clone(estimator) for _ in range(2)]
    errors = []
    barrier = threading.Barrier(2)

    def work(est):
        try:
            barrier.wait()
            est.fit(X, y, **fit_params)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(e,)) for e in ests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"a threaded fit failed: {errors[0]!r}"
    for est in ests:
        _assert_same(expected, fingerprint(est, X), "a fit in a thread")


def check_seed_reproducible(estimator, X, y, fit_params=None, predict_params=None):
    """The same integer seed gives the same model; another seed, another model.

    Parameters
    ----------
    estimator : estimator
        A configured, unfitted sktransfer estimator; it is cloned with
        ``random_state=0`` and ``1``, never fitted itself.
    X : array-like
        Data the estimator can be fitted on.
    y : array-like or None
        Its target.
    fit_params : dict or None, default=None
        Keyword arguments of ``fit`` (e.g. ``task_ids``).
    predict_params : dict or None, default=None
        Keyword arguments of its prediction method (see :func:`fingerprint`).
    """
    fit_params, predict_params = fit_params or {}, predict_params or {}
    fits = [clone(estimator).set_params(random_state=seed).fit(X, y, **fit_params)
            for seed in (0, 0, 1)]
    first, again, other = (fingerprint(f, X, **predict_params) for f in fits)
    _assert_same(first, again, "a second fit with random_state=0")
    assert not np.array_equal(first["output"], other["output"]), (
        f"{type(estimator).__name__}: random_state=0 and random_state=1 gave the same "
        "predictions; the seed does not reach the model")


def check_pickle_round_trip(estimator, X, y, fit_params=None, predict_params=None,
                            partial_fit_params=None, adapt=None):
    """A pickled fitted estimator is the same model and keeps training as the original.

    Parameters
    ----------
    estimator : estimator
        A configured, unfitted sktransfer estimator with an integer
        ``random_state``; it is cloned, never fitted itself.
    X : array-like
        Data the estimator can be fitted on.
    y : array-like or None
        Its target.
    fit_params : dict or None, default=None
        Keyword arguments of ``fit`` (e.g. ``task_ids``).
    predict_params : dict or None, default=None
        Keyword arguments of its prediction method (see :func:`fingerprint`).
    partial_fit_params : dict or None, default=None
        Keyword arguments of ``partial_fit`` on ``(X, y)``; ``None`` skips the
        continued training (for estimators without ``partial_fit``).
    adapt : tuple or None, default=None
        ``(X_support, y_support)``: the original and the copy each ``adapt``
        to them, and the adapted models must be the same (few-shot
        estimators).
    """
    fit_params, predict_params = fit_params or {}, predict_params or {}
    original = clone(estimator).fit(X, y, **fit_params)
    copy = pickle.loads(pickle.dumps(original))
    _assert_same(fingerprint(original, X, **predict_params),
                 fingerprint(copy, X, **predict_params), "the unpickled estimator")
    if adapt is not None:
        _assert_same(fingerprint(original.adapt(*adapt), X, **predict_params),
                     fingerprint(copy.adapt(*adapt), X, **predict_params),
                     "adapt after unpickling")
    if partial_fit_params is None:
        return
    original.partial_fit(X, y, **partial_fit_params)
    copy.partial_fit(X, y, **partial_fit_params)
    _assert_same(fingerprint(original, X, **predict_params),
                 fingerprint(copy, X, **predict_params),
                 "partial_fit after unpickling")
