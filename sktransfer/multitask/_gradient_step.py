"""The training step of the gradient-based task weightings.

A gradient-based weighting (MGDA, PCGrad, CAGrad, ...) needs the gradient of
every task's loss, not only of their sum. :func:`gradient_train_step`
replaces skorch's ``train_step_single`` for them:

1. forward the batch and compute the (T,) per-task losses;
2. per-task gradients of the shared parameters, one row per task of a
   (T, P) matrix ``G`` (one ``torch.autograd.grad`` call per task present
   in the batch, the graph kept between calls);
3. the weighting's solver turns the T x T Gramian ``G G^T`` into weights
   ``w`` (tasks without a label in the batch are left out and get 0);
4. the shared parameters' ``.grad`` is set to ``w @ G``; every other
   (task-specific) parameter gets the ordinary gradient of the sum of the
   task losses, as its gradient does not interact with the other tasks;
   an architecture's ``penalty()`` gets its ordinary gradient too;
5. skorch's optimizer then takes its step as usual.

The representation-level variant (MGDA-UB) differentiates the task losses
with respect to the shared representation ``Z = trunk(X)`` instead: a
forward hook hands the rest of the network a detached copy of ``Z``, the
per-task gradients of ``Z`` are combined with the solver's weights, and one
backward pass through the trunk follows.

The effective weights of each step are recorded in the history like those
of the loss-based weightings (``train_task_weights``).
"""

import torch
from skorch.dataset import unpack_data

from ._weighting_base import BackwardWeighter

__all__ = ["gradient_train_step", "batch_task_losses", "shared_parameters"]


def shared_parameters(model, weighting_name="this weighting"):
    """The trainable parameters shared by all tasks, from ``model.shared_parameters()``.

    A model without that method is an error; an empty list means that
    nothing is shared.
    """
    getter = getattr(model, "shared_parameters", None)
    if getter is None:
        raise ValueError(
            f"{weighting_name} needs the parameters shared by all tasks, but the shared "
            f"parameters of the architecture {type(model).__name__} cannot be found: define a "
            "method shared_parameters() on the module that returns the list of parameters "
            "all tasks share (as HardSharingNet does), or use a loss-based weighting"
        )
    return [p for p in getter() if p.requires_grad]


def batch_task_losses(net, batch, **fit_params):
    """Per-task mean losses and label counts of ``batch`` under the current weights."""
    Xi, yi = unpack_data(batch)
    y_pred = net.infer(Xi, **fit_params)
    return net.task_losses(y_pred, yi, Xi)


def _split_forward(net, Xi, **fit_params):
    """The usual forward, with the trunk's output swapped for a detached leaf.

    Returns ``(y_pred, Z, Z_leaf)``: the heads (and everything after the
    trunk) run on ``Z_leaf``, so the per-task backward passes stop there;
    ``Z.backward(...)`` then runs the trunk's backward pass once.
    """
    model = net.module_.model
    trunk = getattr(model, "trunk", None)
    if not (isinstance(trunk, torch.nn.Module) and hasattr(model, "heads")):
        raise ValueError(
            "a representation-level weighting ('mgda_ub') differentiates the losses with "
            "respect to the shared representation Z = trunk(X), so the architecture needs a "
            f"`trunk` module and `heads` (architecture='hard'); {type(model).__name__} has not"
        )
    captured = []

    def swap(module, inputs, output):
        if captured or not isinstance(output, torch.Tensor):
            raise ValueError("'mgda_ub' needs a trunk that is called once per forward pass "
                             "and returns one tensor")
        leaf = output.detach().requires_grad_(True)
        captured.append((output, leaf))
        return leaf

    handle = trunk.register_forward_hook(swap)
    try:
        y_pred = net.infer(Xi, **fit_params)
    finally:
        handle.remove()
    Z, Z_leaf = captured[0]
    return y_pred, Z, Z_leaf


def _set_grad(param, grad):
    if param.grad is None:
        param.grad = grad
    else:
        param.grad.add_(grad)


def per_task_gradients(losses, idx, targets, others):
    """Per-task gradients: the (k, P) matrix for ``targets`` and the gradients of ``others``.

    One ``torch.autograd.grad`` call per task of ``idx`` for the targets,
    the graph kept until the last. The ``others`` (task-specific
    parameters) get the gradient of the sum of the task losses in one more
    call, first: their per-task gradients are never needed separately, and
    the per-task calls then skip their weight gradients. Unused parameters
    get zero (targets) or no (others) gradient.
    """
    sizes = [p.numel() for p in targets]
    G = losses.new_empty((len(idx), sum(sizes)))
    other_sum = [None] * len(others)
    if others:
        other_sum = list(torch.autograd.grad(losses[idx].sum(), others, retain_graph=True,
                                             allow_unused=True))
    for k, t in enumerate(idx):
        grads = torch.autograd.grad(losses[t], targets, retain_graph=k < len(idx) - 1,
                                    allow_unused=True)
        off = 0
        for g, n in zip(grads, sizes):
            if g is None:
                G[k, off:off + n] = 0
            else:
                G[k, off:off + n] = g.reshape(-1)
            off += n
    return G, other_sum


_GRAM_CHUNK = 65536


def gramian(G):
    """``G @ G.T`` in float64 numpy, in column blocks that stay in cache."""
    if G.shape[1] <= _GRAM_CHUNK:
        return (G @ G.T).double().cpu().numpy()
    M = G.new_zeros((G.shape[0], G.shape[0]))
    for start in range(0, G.shape[1], _GRAM_CHUNK):
        block = G[:, start:start + _GRAM_CHUNK]
        M.addmm_(block, block.T)
    return M.double().cpu().numpy()


def _write(params, flat):
    off = 0
    for p in params:
        n = p.numel()
        _set_grad(p, flat[off:off + n].view_as(p))
        off += n


def gradient_train_step(net, batch, **fit_params):
    """skorch ``train_step_single`` for a weighter that sets the gradients (module docstring).

    The weighter is a :class:`~._weighting_base.GradientWeighter` (steps 1 to
    5) or a :class:`~._weighting_base.BackwardWeighter`, whose ``backward``
    replaces steps 2 to 4.
    """
    net._set_training(True)
    Xi, yi = unpack_data(batch)
    module = net.module_
    weighter = module.weighter
    own_backward = isinstance(weighter, BackwardWeighter)
    representation = not own_backward and weighter.level == "representation"
    if representation:
        y_pred, Z, Z_leaf = _split_forward(net, Xi, **fit_params)
    else:
        y_pred = net.infer(Xi, **fit_params)
    losses, counts = net.task_losses(y_pred, yi, Xi)
    present = counts > 0
    # The architecture's penalty (if any) gets its ordinary gradient, first, while the
    # graph it may share with the losses is still there.
    penalty = module.penalty()
    if penalty is not None:
        penalty.backward(retain_graph=True)
        penalty = penalty.detach()
    if own_backward:
        total, weights = weighter.backward(losses, present, module.model)
        net._accumulate("train", losses, counts, weights, present)
        return {"loss": total if penalty is None else total + penalty, "y_pred": y_pred}

    idx = torch.nonzero(present).flatten().tolist()
    if representation:
        targets = [Z_leaf]
        shared_ids = {id(p) for p in module.model.trunk.parameters()}
    else:
        name = type(weighter).__name__ if weighter.name is None else repr(weighter.name)
        targets = shared_parameters(module.model, name)
        shared_ids = {id(p) for p in targets}
    others = [p for p in module.model.parameters()
              if p.requires_grad and id(p) not in shared_ids]
    if not targets:
        # Nothing is shared (e.g. architecture="independent"): the tasks do not interact
        # and every parameter gets its ordinary gradient.
        weights = present.to(losses.dtype)
        total = (weights * losses).sum()
        total.backward()
        net._accumulate("train", losses, counts, weights, present)
        total = total.detach()
        return {"loss": total if penalty is None else total + penalty, "y_pred": y_pred}
    G, other_sum = per_task_gradients(losses, idx, targets, others)
    M = gramian(G)
    w_np = weighter.solve(M, losses.detach()[idx].double().cpu().numpy())
    w = torch.as_tensor(w_np, dtype=G.dtype, device=G.device)
    direction = w @ G
    if representation:
        Z.backward(direction.view_as(Z))
    else:
        _write(targets, direction)
    for p, g in zip(others, other_sum):
        if g is not None:
            _set_grad(p, g)
    weights = losses.new_zeros(losses.shape[0])
    weights[idx] = w
    net._accumulate("train", losses, counts, weights, present)
    total = (weights * losses.detach()).sum()
    if penalty is not None:
        total = total + penalty
    return {"loss": total, "y_pred": y_pred}
