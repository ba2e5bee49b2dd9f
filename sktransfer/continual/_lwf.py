"""Learning without forgetting (Li and Hoiem, 2017).

Before a new task, a frozen copy of the network is kept. While the task is
learned, the new network's outputs for the *old* tasks are distilled towards
the copy's on the current inputs:

``loss + alpha * T^2 * KL(softmax(z_old / T) || softmax(z_new / T))``

averaged over the rows of the mini-batch, with temperature ``T``. The outputs
distilled are each old task's head in the task scenario, the classes seen
before the task in the class scenario (as in van de Ven et al.), and the
whole head in the domain scenario.
"""

import copy

import torch
from torch.nn import functional as F

from ..base import MASK_VALUE
from ._strategies import _NON_NEGATIVE, _POSITIVE, Plugin, Strategy

__all__ = ["LwF"]



def _distill(new, old, temperature):
    """T^2 * KL(p_old || p_new) over the last dimension, summed over it, mean over rows."""
    logp_old = F.log_softmax(old / temperature, -1)
    logp_new = F.log_softmax(new / temperature, -1)
    kl = (logp_old.exp() * (logp_old - logp_new)).sum(-1)
    return temperature ** 2 * kl.mean()


class _LwFPlugin(Plugin):
    def __init__(self, alpha, temperature, scenario):
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.scenario = scenario
        self.old = None
        self.n_learned = 0

    def before_task(self, net, task):
        if not self.n_learned:
            self.old = None
            return
        old = copy.deepcopy(net.module_).eval()
        old.requires_grad_(False)
        self.old = old
        if self.scenario == "task":
            self.heads = [k for k in range(old.n_heads) if k != task.index]
        self.old_mask = old.head_mask[0].clone() if old.n_heads else None

    def extra_loss(self, net, X, y_pred, y):
        if self.old is None or self.alpha == 0:
            return None
        Xi = X["X"].to(net.training_device())
        with torch.no_grad():
            if self.scenario == "task":
                if not self.heads:
                    return None
                old = self.old.head_logits(Xi, self.heads)
            else:
                old = self.old(Xi, X["task_ids"].to(net.training_device()))
        if self.scenario == "task":
            new = net.module_.head_logits(Xi, self.heads)
        elif self.scenario == "class":
            new = y_pred.masked_fill(~self.old_mask, MASK_VALUE)
        else:
            new = y_pred
        return self.alpha * _distill(new, old, self.temperature)

    def after_task(self, net, task):
        self.n_learned += 1
        self.old = None  # free the copy; a new one is taken before the next task


class LwF(Strategy):
    """Learning without forgetting: distil the previous network's outputs.

    Parameters
    ----------
    alpha : float, default=1.0
        Weight of the distillation term.
    temperature : float, default=2.0
        Softmax temperature ``T``; the term is scaled by ``T^2``.

    Examples
    --------
    >>> from sktransfer.continual import ContinualClassifier, LwF
    >>> ContinualClassifier(strategy=LwF(alpha=2.0))
    ContinualClassifier(strategy=LwF(alpha=2.0))
    """

    _parameter_constraints: dict = {"alpha": [_NON_NEGATIVE], "temperature": [_POSITIVE]}
    _regularization_only = True

    def __init__(self, alpha=1.0, temperature=2.0):
        self.alpha = alpha
        self.temperature = temperature

    def _build(self, scenario):
        return _LwFPlugin(self.alpha, self.temperature, scenario)
