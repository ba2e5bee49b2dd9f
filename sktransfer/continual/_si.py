"""Synaptic intelligence (Zenke, Poole and Ganguli, 2017).

While a task is learned, each parameter's contribution to the decrease of
the loss is accumulated along the optimisation path,
``omega_i += -g_i * delta_theta_i`` per step (``g`` the gradient of the data
loss, before any penalty). At the end of the task the importance grows by
``Omega_i += omega_i / (Delta_i^2 + xi)`` with ``Delta_i`` the parameter's
total change over the task, and later tasks are trained on

``loss + si_c * sum_i Omega_i (theta_i - theta*_i)^2``

with ``theta*`` the parameters at the end of the previous task (Zenke et
al.'s penalty, with no factor 1/2). The per-step bookkeeping and the
penalty's gradient are ``torch._foreach_*`` operations over the parameter
list.
"""

import torch

from ._ewc import _aligned
from ._strategies import _NON_NEGATIVE, _POSITIVE, Plugin, Strategy

__all__ = ["SynapticIntelligence"]


class _SIPlugin(Plugin):
    def __init__(self, si_c, xi):
        self.si_c = float(si_c)
        self.xi = float(xi)
        self.importance = {}
        self.anchor = {}
        self.n_consolidated = 0

    def before_task(self, net, task):
        self._omega = [torch.zeros_like(p.detach()) for p in net.params]
        self._start = [p.detach().clone() for p in net.params]
        self._importance = _aligned(self.importance, net)
        self._anchor = [self.anchor[n] if n in self.anchor else p.detach().clone()
                        for n, p in zip(net.param_names, net.params)]

    def record_gradients(self, net, params, grads):
        self._grads = torch._foreach_mul(grads, 1.0)
        self._before = torch._foreach_mul(params, 1.0)

    def add_penalty_gradients(self, net, params, grads):
        if not self.n_consolidated or self.si_c == 0:
            return
        tmp = torch._foreach_sub(params, net.select(self._anchor))
        torch._foreach_mul_(tmp, net.select(self._importance))
        torch._foreach_add_(grads, tmp, alpha=2.0 * self.si_c)

    def after_step(self, net, params):
        delta = torch._foreach_sub(params, self._before)
        torch._foreach_mul_(delta, self._grads)
        torch._foreach_sub_(net.select(self._omega), delta)

    def after_task(self, net, task):
        for name, p, omega, start in zip(net.param_names, net.params, self._omega, self._start):
            theta = p.detach().clone()
            add = omega / ((theta - start) ** 2 + self.xi)
            self.importance[name] = self.importance[name] + add if name in self.importance \
                else add
            self.anchor[name] = theta
        self.n_consolidated += 1
        self.before_task(net, task)

    def penalty(self, net):
        if not self.n_consolidated:
            return 0.0
        total = 0.0
        for name, p in zip(net.param_names, net.params):
            if name in self.importance:
                total += float((self.importance[name] * (p.detach() - self.anchor[name]) ** 2)
                               .sum())
        return self.si_c * total


class SynapticIntelligence(Strategy):
    """Synaptic intelligence: importance from the path integral of the gradient.

    Parameters
    ----------
    si_c : float, default=1.0
        Penalty strength ``c`` of ``c * sum_i Omega_i (theta_i - theta*_i)^2``
        (Zenke et al.'s scale: no factor 1/2, importance summed over tasks).
    xi : float, default=0.1
        Damping ``xi`` of ``omega / (Delta^2 + xi)``.

    Examples
    --------
    >>> from sktransfer.continual import ContinualClassifier, SynapticIntelligence
    >>> ContinualClassifier(strategy=SynapticIntelligence(si_c=0.5))
    ContinualClassifier(strategy=SynapticIntelligence(si_c=0.5))
    """

    _parameter_constraints: dict = {"si_c": [_NON_NEGATIVE], "xi": [_POSITIVE]}
    _regularization_only = True

    def __init__(self, si_c=1.0, xi=0.1):
        self.si_c = si_c
        self.xi = xi

    def _build(self, scenario):
        return _SIPlugin(self.si_c, self.xi)
