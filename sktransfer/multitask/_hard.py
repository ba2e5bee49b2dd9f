"""Hard parameter sharing: one shared trunk, one linear head per task.

Also the task-relationship penalty on the heads, in the spirit of
multilinear relationship networks (Long et al., 2017) and multi-task
relationship learning (Zhang & Yeung, 2010).
"""

import math

import torch
from torch import nn

# Above this many tasks, each row's head is gathered instead of computing all.
_GATHER_ABOVE = 16


class _StackedHeads(nn.Module):
    """T linear heads of equal width held as one (T, C, d) weight tensor.

    Computing all heads is one ``einsum``; computing each row's own head
    gathers that row's weight matrix. Both avoid a Python loop over tasks.
    """

    def __init__(self, n_tasks, in_features, out_features):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(n_tasks, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(n_tasks, out_features))
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, Z, task_ids=None):
        t, c, d = self.weight.shape
        if task_ids is None or t <= _GATHER_ABOVE:
            # One matmul for all heads; for few tasks this beats gathering
            # each row's weight matrix (and its scatter-add backward).
            out = torch.addmm(self.bias.view(-1), Z, self.weight.view(t * c, d).T).view(-1, t, c)
            if task_ids is None:
                return out
            return out[torch.arange(Z.shape[0], device=Z.device), task_ids]
        W = self.weight[task_ids]
        return torch.bmm(W, Z.unsqueeze(-1)).squeeze(-1) + self.bias[task_ids]

    def extra_repr(self):
        t, c, d = self.weight.shape
        return f"n_tasks={t}, in_features={d}, out_features={c}"


class HardSharingNet(nn.Module):
    """Hard parameter sharing: one shared trunk, one linear head per task.

    The classic multi-task network (Caruana, 1997): every task reads the
    same representation ``trunk(X)`` and has its own output layer. It is
    what :class:`HardParameterSharing` (``architecture="hard"``) builds.

    Parameters
    ----------
    trunk : nn.Module
        Maps X to a (n, d) representation.
    n_features : int
        ``d``, the trunk's output width.
    n_tasks : int
        Number of tasks.
    n_outputs : int
        Width of every head (the largest number of classes over tasks).
    task_covariance_penalty : float, default=0.0
        Weight ``lambda`` of the task-relationship penalty
        ``lambda * tr(W^T Omega^-1 W)`` on the (T, C * d) head weights ``W``,
        where the task covariance ``Omega = (W W^T)^(1/2) / tr((W W^T)^(1/2))``
        is re-estimated in closed form from the current heads at every step
        (Zhang & Yeung, 2010). Related tasks are pulled together, unrelated
        ones left alone.
    """

    def __init__(self, trunk, n_features, n_tasks, n_outputs, task_covariance_penalty=0.0):
        super().__init__()
        self.trunk = trunk
        self.heads = _StackedHeads(n_tasks, n_features, n_outputs)
        self.task_covariance_penalty = float(task_covariance_penalty)

    def shared_parameters(self):
        """Parameters shared by all tasks (for gradient-based weightings)."""
        return list(self.trunk.parameters())

    def forward(self, X, task_ids=None):
        Z = self.trunk(X)
        if Z.dim() > 2:
            Z = Z.flatten(1)
        return self.heads(Z, task_ids)

    def penalty(self):
        """The task-relationship penalty on the heads (None when switched off)."""
        if not self.task_covariance_penalty:
            return None
        return self.task_covariance_penalty * task_relationship_penalty(self.heads.weight)


def task_relationship_penalty(weight, eps=1e-4):
    """``tr(W^T Omega^-1 W)`` with ``Omega`` the closed-form task covariance.

    ``weight`` is (T, ...); ``Omega`` is estimated from the detached weights,
    so the gradient flows through ``W`` only, as in alternating optimisation.
    """
    W = weight.reshape(weight.shape[0], -1)
    with torch.no_grad():
        G = W @ W.T
        evals, evecs = torch.linalg.eigh(G + eps * torch.eye(G.shape[0], dtype=G.dtype,
                                                            device=G.device))
        root = evals.clamp(min=eps).sqrt()
        omega_inv = (evecs / root) @ evecs.T * root.sum()
    return (omega_inv * (W @ W.T)).sum()


# The name sktransfer 0.1 pickled this class under (and sktransfer.transfer imports).
HardSharing = HardSharingNet
