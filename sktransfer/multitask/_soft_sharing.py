"""Soft parameter sharing: independent, cross-stitch and sluice networks.

Each task has its own column, a copy of the trunk; the columns exchange
information only through learned mixing, or not at all:

* ``independent``: no mixing, so no sharing at all, the control that reveals
  negative transfer (and positive transfer, by its absence).
* ``cross_stitch`` (Misra et al., 2016): after every block the columns' activations are
  mixed by a learned T x T matrix.
* ``sluice`` (Ruder et al., 2019): each block's output is split into subspaces that are
  mixed across tasks and subspaces by a learned (T k) x (T k) matrix, an orthogonality
  penalty keeps the subspaces of a task apart, and each task's representation is a
  learned mix of the block outputs (those of the last block's width).
"""

import torch
from torch import nn

from ._blocks import flat_width
from ._heads import TaskHeads


def _mixing_matrix(n, init_self):
    if n == 1:
        return torch.ones(1, 1)
    off = (1.0 - init_self) / (n - 1)
    return torch.full((n, n), off) + torch.eye(n) * (init_self - off)


class ColumnNet(nn.Module):
    """T columns of trunk blocks with optional cross-task mixing.

    Parameters
    ----------
    columns : list of list of nn.Module
        ``columns[t][l]`` is block ``l`` of task ``t``'s column.
    block_shapes : list of tuple
        Output shape of every block (one sample).
    n_tasks, n_outputs : int
    mixing : {None, "cross_stitch", "sluice"}
    init_self : float
        Initial weight of a unit on itself in the mixing matrices.
    n_subspaces : int
        Sluice: subspaces per block output (along the feature/channel axis).
    orthogonality : float
        Sluice: weight of the subspace orthogonality penalty.
    """

    def __init__(self, columns, block_shapes, n_tasks, n_outputs, mixing=None, init_self=0.9,
                 n_subspaces=2, orthogonality=0.01):
        super().__init__()
        self.n_tasks = n_tasks
        self.mixing = mixing
        self.n_subspaces = n_subspaces if mixing == "sluice" else 1
        self.orthogonality = orthogonality
        self.columns = nn.ModuleList(nn.ModuleList(col) for col in columns)
        n_blocks = len(block_shapes)
        if mixing is not None:
            units = n_tasks * self.n_subspaces
            if mixing == "sluice":
                for shape in block_shapes:
                    if shape[0] % self.n_subspaces:
                        raise ValueError(
                            f"sluice splits every block output into n_subspaces="
                            f"{self.n_subspaces} along its first axis, but a block outputs "
                            f"{shape}; choose n_subspaces dividing {shape[0]}"
                        )
            self.alphas = nn.ParameterList(
                nn.Parameter(_mixing_matrix(units, init_self)) for _ in range(n_blocks))
        width = flat_width(block_shapes[-1])
        self._mixed_layers = []
        if mixing == "sluice":
            self._mixed_layers = [i for i, s in enumerate(block_shapes) if flat_width(s) == width]
            beta = torch.zeros(n_tasks, len(self._mixed_layers))
            beta[:, -1] = 1.0
            self.betas = nn.Parameter(beta)
        self.heads = TaskHeads(n_tasks, width, n_outputs)
        self._penalty = None

    def shared_parameters(self):
        """The cross-task mixing parameters (the only shared ones)."""
        out = list(self.alphas) if self.mixing is not None else []
        if self.mixing == "sluice":
            out.append(self.betas)
        return out

    def _mix(self, H, alpha):
        T, k = self.n_tasks, self.n_subspaces
        n = H.shape[1]
        if k == 1:
            return (alpha @ H.reshape(T, -1)).view(H.shape)
        # (T, n, C, ...) -> (T * k, n, C / k, ...): subspaces along the first feature axis.
        rest = H.shape[3:]
        c = H.shape[2] // k
        U = H.reshape(T, n, k, c, *rest).transpose(1, 2).reshape(T * k, -1)
        U = alpha @ U
        return U.view(T, k, n, c, *rest).transpose(1, 2).reshape(H.shape)

    def _orthogonality(self, H):
        # ||U_a^T U_b||_F^2 between the subspaces of each task, per sample count.
        T, n, k = H.shape[0], H.shape[1], self.n_subspaces
        U = H.reshape(T, n, k, -1).transpose(1, 2)  # (T, k, n, d/k)
        total = H.new_zeros(())
        for a in range(k):
            for b in range(a + 1, k):
                total = total + (U[:, a].transpose(1, 2) @ U[:, b]).pow(2).sum() / n ** 2
        return total

    def _run_columns(self, X):
        T = self.n_tasks
        H = None
        outputs = []
        penalty = X.new_zeros(())
        for level in range(len(self.columns[0])):
            inputs = [X] * T if H is None else list(H)
            H = torch.stack([self.columns[t][level](inputs[t]) for t in range(T)])
            if self.mixing is not None:
                H = self._mix(H, self.alphas[level])
                if self.mixing == "sluice":
                    if self.orthogonality:
                        penalty = penalty + self._orthogonality(H)
                    outputs.append(H)
        if self.mixing == "sluice":
            layers = torch.stack([outputs[i].flatten(2) for i in self._mixed_layers], dim=1)
            Z = torch.einsum("tl,tlnd->tnd", self.betas, layers)
            self._penalty = self.orthogonality * penalty
        else:
            Z = H.flatten(2)
        return Z

    def penalty(self):
        """The sluice orthogonality penalty of the last forward pass (0 otherwise)."""
        return self._penalty

    def forward(self, X, task_ids=None):
        if self.mixing is None and task_ids is not None:
            return self._forward_routed(X, task_ids)
        out = self.heads(self._run_columns(X))
        if task_ids is None:
            return out
        return out[torch.arange(X.shape[0], device=X.device), task_ids]

    def _forward_routed(self, X, task_ids):
        # Independent columns: each row runs through its own task's column only.
        out = None
        for t in torch.unique(task_ids).tolist():
            rows = (task_ids == t).nonzero(as_tuple=True)[0]
            h = X[rows]
            for block in self.columns[t]:
                h = block(h)
            o = h.flatten(1) @ self.heads.weight[t].T + self.heads.bias[t]
            if out is None:
                out = o.new_zeros(X.shape[0], o.shape[1])
            out = out.index_copy(0, rows, o)
        return out
