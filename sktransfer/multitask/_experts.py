"""MMoE: multi-gate mixture of experts (Ma et al., 2018).

``n_experts`` copies of the trunk (each freshly initialised) are shared by all
tasks; each task has a softmax gate over the experts that reads the input, and
its head reads the gated sum of the expert outputs.
"""

import torch
from torch import nn

from ._heads import TaskHeads


class MixtureOfExpertsNet(nn.Module):
    """Shared experts, one softmax gate and one head per task."""

    def __init__(self, experts, n_features, n_inputs, n_tasks, n_outputs):
        super().__init__()
        self.experts = nn.ModuleList(experts)
        n_experts = len(experts)
        self.gate_weight = nn.Parameter(torch.zeros(n_tasks, n_experts, n_inputs))
        self.gate_bias = nn.Parameter(torch.zeros(n_tasks, n_experts))
        nn.init.normal_(self.gate_weight, std=1.0 / n_inputs ** 0.5)
        self.heads = TaskHeads(n_tasks, n_features, n_outputs)

    def shared_parameters(self):
        """The experts' parameters (shared by every task)."""
        return list(self.experts.parameters())

    def gates(self, X, task_ids=None):
        """Gate weights: (n, T, E), or (n, E) for each row's own task."""
        x = X.flatten(1)
        if task_ids is None:
            return torch.softmax(torch.einsum("nd,ted->nte", x, self.gate_weight)
                                 + self.gate_bias, dim=-1)
        logits = torch.einsum("nd,ned->ne", x, self.gate_weight[task_ids])
        return torch.softmax(logits + self.gate_bias[task_ids], dim=-1)

    def forward(self, X, task_ids=None):
        E = torch.stack([e(X).flatten(1) for e in self.experts])  # (E, n, d)
        g = self.gates(X, task_ids)
        if task_ids is None:
            Z = torch.einsum("nte,end->tnd", g, E)
            return self.heads(Z)
        Z = torch.einsum("ne,end->nd", g, E)
        W, b = self.heads.weight[task_ids], self.heads.bias[task_ids]
        return torch.bmm(W, Z.unsqueeze(-1)).squeeze(-1) + b
