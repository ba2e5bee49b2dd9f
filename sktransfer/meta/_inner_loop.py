"""The inner loop of gradient-based meta-learning, and the module built on it.

:func:`inner_loop` is the one function that runs the inner steps of a task,
as a pure function over a params dict: nothing copies a model. A network
runs on a dict of tensors (``forward(params, X)``) and every step replaces
that dict with what an :class:`~sktransfer.meta.InnerUpdate` makes of the
support gradient (``params - lr * grad`` for plain SGD):

* ``functional=True`` takes the gradient with :func:`torch.func.grad_and_value`,
  which works under :func:`torch.func.vmap` (a meta-batch of tasks at once);
* ``functional=False`` takes it with :func:`torch.autograd.grad`, for the
  per-task loop (each task's graph can be freed before the next one).

Both keep the graph of the inner step for the second-order meta-gradient
unless ``first_order=True``, which treats the inner gradients as constants
(first-order MAML).

:class:`InnerLoopModule` holds what every gradient-based meta-learner of the
package (MAML and its variants, Reptile) shares around that loop: the
learner, its inner update, which parameters adapt, how a task's forward pass
runs (ANIL runs the trunk once per task), the memory format, and adapting to
a support set after meta-training. MAML and Reptile add their own outer
update on top (:mod:`._maml_module`, :mod:`._reptile`).
"""

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value

from ._functional_forward import functional_forward_fn
from ._inner_update import (  # noqa: F401  (MetaLSTMUpdate: pickles made before 0.2)
    MetaLSTMUpdate,
    MetaSGDUpdate,
    SGDUpdate,
    as_inner_update,
)

__all__ = ["InnerLoopModule", "inner_loop", "resolve_adapt_layers"]

_UNSET = object()


def inner_loop(forward, params, X, y, loss_fn, steps, update=None, *, first_order=False,
               functional=True, return_last=False, lr=_UNSET, update_rule=_UNSET):
    """Adapt ``params`` to one task with ``steps`` inner steps.

    Parameters
    ----------
    forward : callable
        ``forward(params, X)`` returns the outputs for the params dict.
    params : dict of str to Tensor
        The parameters being adapted (the others are closed over by ``forward``).
    X, y : Tensor
        The task's support set.
    loss_fn : callable
        ``loss_fn(outputs, y)``, a scalar.
    steps : int
        Number of inner steps (0 returns ``params`` unchanged).
    update : InnerUpdate, float, Tensor or dict of str to Tensor
        How a step moves the parameters (see :class:`~sktransfer.meta.InnerUpdate`);
        a step size, global or per parameter, is plain gradient descent
        (:class:`~sktransfer.meta.SGDUpdate`).
    first_order : bool, default=False
        Treat the inner gradients (and the loss the update reads) as constants:
        no second-order terms.
    functional : bool, default=True
        Use :mod:`torch.func` (vmap-compatible) rather than :func:`torch.autograd.grad`.
    return_last : bool, default=False
        Also return the outputs and the loss of the last step (computed at the
        parameters before it; ``None`` for ``steps=0``).
    lr, update_rule
        Deprecated in 0.2 (removed in 0.3): pass the step size, or the
        :class:`~sktransfer.meta.MetaLSTMUpdate`, as ``update``.

    Returns
    -------
    dict of str to Tensor
        The adapted parameters (differentiable with respect to the initial
        ones, and to the update's parameters, unless ``first_order`` or
        detached by the caller); with ``return_last``, ``(params, outputs, loss)``.
    """
    if lr is not _UNSET:
        warnings.warn("inner_loop(lr=...) is deprecated in 0.2 and will be removed in "
                      "0.3: pass the step size as update", FutureWarning, stacklevel=2)
        update = lr if update is None else update
    if update_rule is not _UNSET:
        warnings.warn("inner_loop(update_rule=...) is deprecated in 0.2 and will be "
                      "removed in 0.3: pass the MetaLSTMUpdate as update", FutureWarning,
                      stacklevel=2)
        update = update if update_rule is None else update_rule
    if update is None:
        raise TypeError("inner_loop() needs update: an InnerUpdate or a step size")
    update = as_inner_update(update)
    names = list(params)
    state = update.init_state(params) if steps else None
    out = loss = None

    def task_loss(p):
        out = forward(p, X)
        return loss_fn(out, y), out

    for _ in range(steps):
        if functional:
            grads, (loss, out) = grad_and_value(task_loss, has_aux=True)(params)
        else:
            loss, out = task_loss(params)
            tensors = [params[k] for k in names]
            raw = torch.autograd.grad(loss, tensors, create_graph=not first_order,
                                      allow_unused=True)
            grads = {k: (g if g is not None else torch.zeros_like(t))
                     for k, g, t in zip(names, raw, tensors)}
        if first_order:
            grads = {k: g.detach() for k, g in grads.items()}
            loss = loss.detach()
        params, state = update.step(params, grads, loss, state)
    if return_last:
        return params, out, loss
    return params


def resolve_adapt_layers(adapt_layers, names):
    """Names of the parameters adapted in the inner loop."""
    if isinstance(adapt_layers, str):
        if adapt_layers == "all":
            return list(names)
        if adapt_layers == "head":
            return [n for n in names if n.startswith("head.")]
        prefixes = (adapt_layers,)
    elif isinstance(adapt_layers, (list, tuple)) and adapt_layers and all(
            isinstance(p, str) for p in adapt_layers):
        prefixes = tuple(adapt_layers)
    else:
        raise ValueError(
            "adapt_layers must be 'all', 'head' or a non-empty list of parameter-name "
            f"prefixes (such as 'head.' or 'trunk.features.8'), got {adapt_layers!r}"
        )
    chosen = [n for n in names if n.startswith(prefixes)]
    if not chosen:
        raise ValueError(f"adapt_layers={adapt_layers!r} matches no parameter; the "
                         f"parameters are {list(names)[:20]}")
    return chosen


def _classification_loss(out, y):
    return F.cross_entropy(out, y)


def _regression_loss(out, y):
    return F.mse_loss(out.reshape(y.shape), y)


class InnerLoopModule(nn.Module):
    """A learner that :func:`inner_loop` adapts to each task, with an inner update.

    The base of the MAML and Reptile meta-models: they add the outer update
    (``meta_step``). Adaptation after meta-training (:meth:`adapt_state`) and
    prediction with adapted parameters (:meth:`predict_logits`) are shared.

    Parameters
    ----------
    learner : Learner
        The network: parameter names start with ``trunk.`` and ``head.``.
    inner_update : InnerUpdate
        How an inner step moves the adapted parameters; registered as a
        submodule, so its parameters are meta-parameters.
    adapt_layers : "all", "head" or list of str
        The parameters the inner loop adapts (``"head"``: ANIL).
    inner_steps, inner_steps_test : int
        Inner steps in meta-training, and when adapting after it.
    task : {"classification", "regression"}
        The loss: cross-entropy, or the mean squared error.
    """

    def __init__(self, learner, inner_update, *, adapt_layers, inner_steps, inner_steps_test,
                 task="classification"):
        super().__init__()
        self.learner = learner
        self.inner_update = inner_update
        names = [n for n, _ in learner.named_parameters()]
        self.adapt_names = resolve_adapt_layers(adapt_layers, names)
        self.anil = all(n.startswith("head.") for n in self.adapt_names)
        self.inner_steps = int(inner_steps)
        self.inner_steps_test = int(inner_steps_test)
        self.task = task

    # ----------------------------------------------------------- pickling
    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_plans", None)  # the functional forwards are rebuilt after unpickling
        return state

    def __setstate__(self, state):
        if "inner_update" not in state["_modules"]:
            state = self._upgrade_state(dict(state))
        super().__setstate__(state)

    def _upgrade_state(self, state):
        """The state of a module pickled before 0.2 (inner rates and update rule as
        attributes of the module) in the current layout."""
        modules = dict(state["_modules"])
        rates = modules.pop("inner_lrs", None)
        rule = modules.pop("update_rule", None)
        if rates is not None:
            update = MetaSGDUpdate({n: rates[n.replace(".", "__")] for n in state["adapt_names"]})
        elif rule is not None:
            update = rule
        else:
            update = SGDUpdate(state["inner_lr"])
        learner = modules.pop("learner")
        state["_modules"] = {"learner": learner, "inner_update": update, **modules}
        for key in ("inner_lr", "inner_lrs", "update_rule"):
            state.pop(key, None)
        return state

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights saved before 0.2: "inner_lrs.*" and "update_rule.*"
        for old, new in (("inner_lrs.", "inner_update.lrs."), ("update_rule.", "inner_update.")):
            for key in [k for k in state_dict if k.startswith(prefix + old)]:
                state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------- pieces
    @property
    def loss_fn(self):
        return _classification_loss if self.task == "classification" else _regression_loss

    def functional_forward(self, channels_last=False):
        """:func:`functional_forward_fn` of the learner, planned once per memory format."""
        plans = self.__dict__.setdefault("_plans", {})
        if channels_last not in plans:
            plans[channels_last] = functional_forward_fn(self.learner,
                                                         channels_last=channels_last)
        return plans[channels_last]

    #: Channels-last convolutions on a CPU: ``"auto"`` (the rule of
    #: :meth:`use_channels_last`), ``True`` or ``False``; a switch for benchmarks.
    channels_last = "auto"

    #: Second-order steps use channels-last from this many examples per task.
    CHANNELS_LAST_MIN_EXAMPLES = 20

    def use_channels_last(self, X, examples_per_task=None, second_order=False):
        """Whether the convolutions of the per-task loop run in channels-last memory format.

        On a CPU, oneDNN's convolutions are faster on channels-last (NHWC)
        tensors for first-order steps; PyTorch's double backward (second
        order) gains only on larger tasks and loses on small ones, so
        second-order steps switch at ``CHANNELS_LAST_MIN_EXAMPLES`` examples
        per task (support + query). Adaptation and prediction (first order,
        forward only) always use it, on float32 inputs. The results are the
        same up to float32 rounding (the rounding differs). The measurements
        are on the Benchmarks page (:ref:`benchmarks_meta`).
        """
        if self.channels_last != "auto":
            return bool(self.channels_last)
        if X.device.type != "cpu" or X.dtype != torch.float32:
            return False
        return not second_order or examples_per_task >= self.CHANNELS_LAST_MIN_EXAMPLES

    def task_forward(self, params, Xs, Xq, channels_last=False):
        """``(forward, support_input, query_input)`` for the inner loop of one task.

        ``forward(p, X)`` runs the learner with the tensors of ``p`` in place
        of the adapted parameters (and ``params``, or the learner's own, for
        the others): as a compiled list of functional calls when the network
        is made of plain layers (see :func:`functional_forward_fn`), else with
        :func:`torch.func.functional_call`. With ANIL (only head parameters
        adapted) the trunk runs once per task and the inner loop works on the
        head alone.
        """
        if self.anil:
            if params is None:
                fs, fq = self.learner.trunk(Xs), self.learner.trunk(Xq)
            else:
                trunk = {k[6:]: v for k, v in params.items() if k.startswith("trunk.")}
                fs = functional_call(self.learner.trunk, trunk, (Xs,))
                fq = functional_call(self.learner.trunk, trunk, (Xq,))
            fs, fq = fs.flatten(1), fq.flatten(1)
            source = params if params is not None else dict(self.learner.named_parameters())
            head = {k: source[k] for k in ("head.weight", "head.bias")}

            def forward(p, X):
                return F.linear(X, p.get("head.weight", head["head.weight"]),
                                p.get("head.bias", head["head.bias"]))
            return forward, fs, fq
        learner = self.learner
        compiled = self.functional_forward(channels_last)
        if compiled is not None:
            base = params if params is not None else dict(learner.named_parameters())

            def forward(p, X):
                return compiled({**base, **p}, X)
            return forward, Xs, Xq
        base = params or {}

        def forward(p, X):
            return functional_call(learner, {**base, **p}, (X,))
        return forward, Xs, Xq

    # ------------------------------------------------------------ adapting
    def adapt_params(self, params, X, y, steps, update, return_last=False):
        """The adapted parameters of ``params`` (detached) after ``steps`` inner steps
        on ``(X, y)``, first order, one task; with ``return_last``, also the outputs
        and the loss of the last step (see :func:`inner_loop`).

        ``params`` holds every parameter of the learner, detached; the adapted
        ones start from a copy.
        """
        start = {k: params[k].clone().requires_grad_(True) for k in self.adapt_names}
        with torch.enable_grad():
            # the ANIL query features of one row are not used (the trunk draws the
            # same random numbers as in training, dropout included)
            forward, fX, _ = self.task_forward(params, X, X[:1], self.use_channels_last(X))
            if self.anil:
                fX = fX.detach()
            fast, out, loss = inner_loop(forward, start, fX, y, self.loss_fn, steps, update,
                                         first_order=True, functional=False, return_last=True)
        fast = {k: v.detach() for k, v in fast.items()}
        return (fast, out, loss) if return_last else fast

    def adapt_state(self, Xs, ys, n_classes=None, steps=None):
        """Adapted parameters (a dict of detached tensors) for the support set.

        ``steps`` inner steps (default ``inner_steps_test``) with the inner
        update of meta-training (:meth:`InnerUpdate.for_adaptation`), without
        second-order graphs.

        For classification with ``n_classes`` different from the head's
        width, every row of the new head starts from the mean of the
        meta-learned rows (a permutation-invariant start, as in Ye & Chao,
        2022), and the inner update is told the new width.
        """
        params = {k: v.detach() for k, v in self.learner.named_parameters()}
        head_rows = None
        if self.task == "classification" and n_classes is not None:
            width = params["head.weight"].shape[0]
            if n_classes != width:
                head_rows = n_classes
                for k in ("head.weight", "head.bias"):
                    params[k] = params[k].mean(0, keepdim=True).expand(
                        n_classes, *params[k].shape[1:]).clone()
        steps = self.inner_steps_test if steps is None else steps
        params.update(self.adapt_params(params, Xs, ys, steps,
                                        self.inner_update.for_adaptation(head_rows)))
        return params

    def predict_logits(self, state, X):
        """The learner's outputs for ``X`` with the parameters ``state``."""
        compiled = self.functional_forward(self.use_channels_last(X))
        if compiled is not None:
            return compiled(state, X)
        return functional_call(self.learner, state, (X,))
