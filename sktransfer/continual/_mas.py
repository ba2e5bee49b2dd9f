"""Memory aware synapses, MAS (Aljundi et al., 2018).

After each task the importance of every parameter is the mean over the
task's samples of the magnitude of the gradient of the squared L2 norm of
the network's output,

.. math::

    \\Omega_i = \\frac{1}{N} \\sum_{n=1}^{N}
        \\Big| \\frac{\\partial \\lVert f_\\theta(x_n) \\rVert_2^2}{\\partial \\theta_i} \\Big|,

which needs no labels (MAS measures how sensitive the learned function is
to each weight). Importances add up over tasks and later tasks are trained
on ``loss + mas_lambda * sum_i Omega_i (theta_i - theta*_i)^2``, ``theta*``
the parameters after the previous task: the quadratic penalty of online EWC
(with ``gamma = 1``) with ``Omega`` in place of the Fisher, so the two share
their code. ``f`` is the network's output for the sample's head, masked
classes (not seen yet, another task's) left out. Per-sample gradients are
computed with ``torch.func.vmap`` when the network allows, else one sample
at a time.
"""

import torch
from torch.func import functional_call, grad, vmap

from ..base import MASK_VALUE
from ._ewc import _EWCPlugin, _subsample
from ._strategies import _NON_NEGATIVE, _POSITIVE_INT, Strategy

__all__ = ["MAS", "mas_importance"]


def _squared_norm(out):
    # masked logits (constants, no gradient) are left out of the norm
    out = out.float()
    return (out.masked_fill(out <= MASK_VALUE / 2, 0.0) ** 2).sum()


def _output_norm(module, x, t):
    return _squared_norm(module(x, t))


def mas_importance(module, X, task_ids, batch_size=256):
    """MAS importance: mean over samples of ``|d ||f(x)||^2 / d theta|``.

    Parameters
    ----------
    module : ContinualModule
        The network (its ``forward(X, task_ids)``); evaluated in ``eval()``
        mode.
    X : torch.Tensor of shape (n, ...)
        The samples.
    task_ids : torch.Tensor of shape (n,)
        Their heads.
    batch_size : int, default=256
        Samples per vectorised chunk.

    Returns
    -------
    dict of str to torch.Tensor
        The importance of every trainable parameter, by name.
    """
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    acc = {n: torch.zeros_like(p.detach()) for n, p in named}
    if X.shape[0] == 0:
        return acc
    was_training = module.training
    module.eval()
    try:
        params = {n: p.detach() for n, p in named}
        frozen = {n: p.detach() for n, p in module.named_parameters() if not p.requires_grad}
        buffers = dict(module.named_buffers())

        for k in torch.unique(task_ids).tolist():
            rows = torch.nonzero(task_ids == k).squeeze(1)
            t1 = torch.full((1,), k, dtype=torch.long, device=X.device)

            def norm(p, x, t1=t1):
                return _functional_norm(module, p, frozen, buffers, x[None], t1)

            per_sample = vmap(grad(norm), in_dims=(None, 0))
            for start in range(0, rows.numel(), batch_size):
                xb = X[rows[start:start + batch_size]]
                try:
                    g = per_sample(params, xb)
                    for n in acc:
                        acc[n] += g[n].abs().sum(0)
                except (RuntimeError, NotImplementedError):  # no batching rule: a loop
                    for x in xb:
                        with torch.enable_grad():
                            value = _output_norm(module, x[None], t1)
                            gs = torch.autograd.grad(value, [p for _, p in named],
                                                     allow_unused=True)
                        for (n, _), gi in zip(named, gs):
                            if gi is not None:
                                acc[n] += gi.abs()
    finally:
        module.train(was_training)
    return {n: v / X.shape[0] for n, v in acc.items()}


def _functional_norm(module, params, frozen, buffers, x, t):
    return _squared_norm(functional_call(module, ({**params, **frozen}, buffers), (x, t)))


class _MASPlugin(_EWCPlugin):
    def __init__(self, mas_lambda, n_samples):
        # online EWC's penalty (gamma = 1: importances summed, the latest anchor)
        # with lambda / 2 * Omega = mas_lambda * Omega
        super().__init__(2.0 * float(mas_lambda), "exact", 1.0, n_samples)

    def importance(self, net, task):
        X, _, t = _subsample(task, self.fisher_n_samples)
        device = net.training_device()
        return mas_importance(net.module_, X.to(device), t.to(device))


class MAS(Strategy):
    """Memory aware synapses: importance from the output's sensitivity, no labels.

    After each task, ``Omega_i`` is the mean over the task's samples of
    ``|d ||f(x)||^2 / d theta_i|`` (see :func:`mas_importance`); importances
    add up over tasks and later tasks are trained on ``loss + mas_lambda *
    sum_i Omega_i (theta_i - theta*_i)^2``, ``theta*`` the parameters at the
    end of the previous task (EWC's penalty code).

    Parameters
    ----------
    mas_lambda : float, default=1.0
        Penalty strength (the paper's ``lambda``; no factor 1/2).
    n_samples : int or None, default=None
        Estimate the importance on at most this many samples of the task (a
        random subset); ``None`` uses them all.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.continual import MAS, ContinualClassifier
    >>> from sktransfer.datasets import make_permuted_tasks
    >>> X, y = load_digits(return_X_y=True)
    >>> Xs, ys, t = make_permuted_tasks(X / 16, y, n_tasks=2, random_state=0)
    >>> clf = ContinualClassifier(strategy=MAS(mas_lambda=1.0, n_samples=200),
    ...                           scenario="domain", max_epochs=2, random_state=0)
    >>> clf.fit(Xs, ys, task_ids=t).net_.plugins[0].n_consolidated
    2
    """

    _parameter_constraints: dict = {"mas_lambda": [_NON_NEGATIVE],
                                    "n_samples": [_POSITIVE_INT, None]}
    _regularization_only = True

    def __init__(self, mas_lambda=1.0, n_samples=None):
        self.mas_lambda = mas_lambda
        self.n_samples = n_samples

    def _build(self, scenario):
        n = None if self.n_samples is None else int(self.n_samples)
        return _MASPlugin(self.mas_lambda, n)
