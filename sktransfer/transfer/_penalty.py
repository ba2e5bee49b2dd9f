"""The L2-SP penalty: weight decay toward the pretrained weights (Li et al., 2018).

.. math::

    \\Omega(w) = \\frac{\\alpha}{2} \\lVert w_S - w_S^0 \\rVert^2
               + \\frac{\\beta}{2} \\lVert w_{\\bar S} \\rVert^2

where :math:`w_S` are the parameters that came from the pretrained network
(the backbone, and the output layer when it is kept), :math:`w_S^0` their
pretrained values, and :math:`w_{\\bar S}` the parameters of a new head. Only
parameters that currently train contribute (a frozen one is at its starting
point). The sums run over lists of tensors with ``torch._foreach_*`` kernels,
one fused call per term instead of one per parameter.
"""

import torch

__all__ = ["L2SP"]


class L2SP:
    """Holds the anchor weights (on the CPU, by name) and computes the penalty.

    Parameters
    ----------
    alpha : float
        Strength of the pull toward the pretrained weights.
    beta : float
        Strength of the plain L2 penalty on the new head's parameters.
    anchors : dict of str to tensor
        Pretrained value of every anchored parameter.
    new_params : list of str
        Names of the new head's parameters.
    """

    def __init__(self, alpha, beta, anchors, new_params):
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.anchors = {k: v.detach().cpu().clone() for k, v in anchors.items()}
        self.new_params = list(new_params)
        self._cache = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = {}  # device copies are rebuilt on first use
        return state

    def _anchor(self, name, device):
        key = (name, str(device))
        if key not in self._cache:
            self._cache[key] = self.anchors[name].to(device)
        return self._cache[key]

    def __call__(self, named_params):
        """Penalty over the parameters that require a gradient."""
        total = None
        if self.alpha:
            params, anchors = [], []
            for name, p in named_params.items():
                if p.requires_grad and name in self.anchors:
                    params.append(p)
                    anchors.append(self._anchor(name, p.device))
            if params:
                norms = torch._foreach_norm(torch._foreach_sub(params, anchors))
                total = 0.5 * self.alpha * torch.stack(norms).pow(2).sum()
        if self.beta:
            params = [named_params[n] for n in self.new_params if named_params[n].requires_grad]
            if params:
                term = 0.5 * self.beta * torch.stack(torch._foreach_norm(params)).pow(2).sum()
                total = term if total is None else total + term
        return total
