"""Output layers with one head per task, for networks that keep one representation per task.

The column, attention and expert networks compute a (T, n, d)
representation, one (n, d) block per task; :class:`TaskHeads` reads each
block with its task's own linear layer in one ``einsum``.
"""

import torch
from torch import nn


class TaskHeads(nn.Module):
    """One linear head per task reading its own (T, n, d) representation."""

    def __init__(self, n_tasks, in_features, out_features):
        super().__init__()
        bound = 1.0 / in_features ** 0.5
        self.weight = nn.Parameter(torch.empty(n_tasks, out_features, in_features).uniform_(
            -bound, bound))
        self.bias = nn.Parameter(torch.empty(n_tasks, out_features).uniform_(-bound, bound))

    def forward(self, Z):
        """``Z`` (T, n, d) -> (n, T, C)."""
        return torch.einsum("tnd,tcd->ntc", Z, self.weight) + self.bias
