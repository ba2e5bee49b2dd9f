"""The inner loop of gradient-based meta-learning, as pure functions over a params dict.

Nothing here copies a model. A network is run with
:func:`torch.func.functional_call` on a dict of tensors, and an inner step
replaces that dict with ``params - lr * grad``:

* ``functional=True`` takes the gradient with :func:`torch.func.grad_and_value`,
  which works under :func:`torch.func.vmap` (a meta-batch of tasks at once);
* ``functional=False`` takes it with :func:`torch.autograd.grad`, for the
  per-task loop (each task's graph can be freed before the next one).

Both keep the graph of the inner step for the second-order meta-gradient
unless ``first_order=True``, which treats the inner gradients as constants
(first-order MAML).
"""

import math

import torch
from torch import nn
from torch.func import functional_call, grad_and_value

__all__ = ["MetaLSTMUpdate", "inner_loop", "functional_forward"]


def functional_forward(module, params, buffers, X):
    """``module(X)`` with the tensors of ``params`` (and ``buffers``) in place of its own."""
    if buffers:
        return functional_call(module, (params, buffers), (X,))
    return functional_call(module, params, (X,))


class MetaLSTMUpdate(nn.Module):
    """A learned inner-loop update rule: the cell update of Ravi & Larochelle's meta-learner.

    The learner's parameters are the cell state of an LSTM. For every
    coordinate, with gradient ``g``, inner loss ``L`` and parameter ``p``::

        i_t = sigmoid(w_i . [g, L, p, i_{t-1}] + b_i)     # input gate: the step size
        f_t = sigmoid(w_f . [g, L, p, f_{t-1}] + b_f)     # forget gate: shrinkage
        p_t = f_t * p_{t-1} - i_t * g

    The gate weights are shared by all coordinates and meta-learned with the
    initial parameters, so the update rule itself is learned (Ravi &
    Larochelle, 2017, "Optimization as a model for few-shot learning"; the
    gates read the raw gradient and loss instead of their preprocessed,
    LSTM-encoded form). It starts as plain gradient descent with step
    ``inner_lr`` (``w = 0``, ``sigmoid(b_i) = inner_lr``, ``f`` close to 1).
    """

    def __init__(self, inner_lr):
        super().__init__()
        lr = min(max(float(inner_lr), 1e-6), 1 - 1e-6)
        self.w_i = nn.Parameter(torch.zeros(4))
        self.b_i = nn.Parameter(torch.tensor(math.log(lr / (1 - lr))))
        self.w_f = nn.Parameter(torch.zeros(4))
        self.b_f = nn.Parameter(torch.tensor(6.0))

    def init_state(self, params):
        i0 = torch.sigmoid(self.b_i)
        f0 = torch.sigmoid(self.b_f)
        return {k: (i0.expand_as(p), f0.expand_as(p)) for k, p in params.items()}

    def forward(self, p, g, loss, state):
        i_prev, f_prev = state
        i = torch.sigmoid(self.w_i[0] * g + self.w_i[1] * loss + self.w_i[2] * p
                          + self.w_i[3] * i_prev + self.b_i)
        f = torch.sigmoid(self.w_f[0] * g + self.w_f[1] * loss + self.w_f[2] * p
                          + self.w_f[3] * f_prev + self.b_f)
        return f * p - i * g, (i, f)


def inner_loop(forward, params, X, y, loss_fn, steps, lr, *, first_order=False,
               functional=True, update_rule=None):
    """Adapt ``params`` to one task with ``steps`` gradient steps.

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
    lr : float or dict of str to Tensor
        The inner step size, global or per parameter (Meta-SGD).
    first_order : bool, default=False
        Treat the inner gradients as constants (no second-order terms).
    functional : bool, default=True
        Use :mod:`torch.func` (vmap-compatible) rather than :func:`torch.autograd.grad`.
    update_rule : MetaLSTMUpdate or None, default=None
        A learned update rule used instead of ``p - lr * g``.

    Returns
    -------
    dict of str to Tensor
        The adapted parameters (differentiable with respect to the initial
        ones, and to ``lr`` and ``update_rule``, unless detached by the caller).
    """
    names = list(params)
    state = update_rule.init_state(params) if update_rule is not None and steps else None

    def task_loss(p):
        return loss_fn(forward(p, X), y)

    for _ in range(steps):
        if functional:
            grads, loss = grad_and_value(task_loss)(params)
        else:
            loss = loss_fn(forward(params, X), y)
            tensors = [params[k] for k in names]
            raw = torch.autograd.grad(loss, tensors, create_graph=not first_order,
                                      allow_unused=True)
            grads = {k: (g if g is not None else torch.zeros_like(t))
                     for k, g, t in zip(names, raw, tensors)}
        if first_order:
            grads = {k: g.detach() for k, g in grads.items()}
            loss = loss.detach()
        if update_rule is not None:
            new, new_state = {}, {}
            for k in names:
                new[k], new_state[k] = update_rule(params[k], grads[k], loss, state[k])
            params, state = new, new_state
        elif isinstance(lr, dict):
            params = {k: params[k] - lr[k] * grads[k] for k in names}
        else:
            params = {k: params[k] - lr * grads[k] for k in names}
    return params
