"""PLE and CGC: progressive layered extraction (Tang et al., 2020).

A level holds shared experts and, for every task, task-specific experts.
Task ``t``'s gate mixes its own experts and the shared ones; a shared gate
mixes all the experts of the level and feeds the shared experts of the next
level (the last level has none). Each task's head reads its gated output of
the last level. One level is Customized Gate Control (CGC).

The experts of the first level are fresh copies of the trunk (the default
MLP, the Conv4 trunk or the user's module) and read the input; those of the
next levels are small MLPs on the previous level's outputs. Gates are
linear-softmax layers: on the first level they read the (flattened) input,
on the next levels the representation that the gated experts read.
"""

import torch
from torch import nn

from ._heads import TaskHeads


def _gate(n_gates, n_experts, n_inputs):
    weight = nn.Parameter(torch.empty(n_gates, n_experts, n_inputs))
    nn.init.normal_(weight, std=1.0 / n_inputs ** 0.5)
    return weight, nn.Parameter(torch.zeros(n_gates, n_experts))


class ProgressiveLayeredExtractionNet(nn.Module):
    """Levels of shared and task-specific experts with task and shared gates.

    Parameters
    ----------
    levels : list of (list of nn.Module, list of list of nn.Module)
        For every level, its shared experts and, for every task, the task's
        experts; all experts of a level return the same width.
    gate_inputs : list of int
        The width each level's gates read (the flattened input for the
        first level, the previous level's output width after).
    width : int
        The output width of the last level's experts.
    n_tasks, n_outputs : int
    """

    def __init__(self, levels, gate_inputs, width, n_tasks, n_outputs):
        super().__init__()
        self.n_tasks = n_tasks
        self.n_levels = len(levels)
        self.shared_experts = nn.ModuleList(nn.ModuleList(s) for s, _ in levels)
        self.task_experts = nn.ModuleList(
            nn.ModuleList(nn.ModuleList(e) for e in task) for _, task in levels)
        self.task_gate_weight = nn.ParameterList()
        self.task_gate_bias = nn.ParameterList()
        self.shared_gate_weight = nn.ParameterList()
        self.shared_gate_bias = nn.ParameterList()
        for level, ((shared, task), n_in) in enumerate(zip(levels, gate_inputs)):
            n_shared, n_task = len(shared), len(task[0])
            w, b = _gate(n_tasks, n_task + n_shared, n_in)
            self.task_gate_weight.append(w)
            self.task_gate_bias.append(b)
            if level < self.n_levels - 1:
                w, b = _gate(1, n_tasks * n_task + n_shared, n_in)
                self.shared_gate_weight.append(w)
                self.shared_gate_bias.append(b)
        self.heads = TaskHeads(n_tasks, width, n_outputs)

    def shared_parameters(self):
        """The parameters through which more than one task's output passes.

        The shared experts and shared gates of every level, the task experts
        of every level but the last (they feed the shared gate), and the task
        gates of the levels before the last two (their output feeds task
        experts that the shared gate reads).
        """
        L = self.n_levels
        params = []
        for level in range(L):
            params += list(self.shared_experts[level].parameters())
            if level < L - 1:
                params += list(self.task_experts[level].parameters())
                params += [self.shared_gate_weight[level], self.shared_gate_bias[level]]
            if level < L - 2:
                params += [self.task_gate_weight[level], self.task_gate_bias[level]]
        return params

    @staticmethod
    def _mix(logits, experts):
        """Softmax of ``logits`` (n, E) applied to ``experts`` (E, n, d)."""
        return torch.einsum("ne,end->nd", torch.softmax(logits, dim=-1), experts)

    def gates(self, X):
        """The task gates of the first level: (n, T, n_task + n_shared) distributions."""
        x = X.flatten(1)
        logits = torch.einsum("nd,ted->nte", x, self.task_gate_weight[0])
        return torch.softmax(logits + self.task_gate_bias[0], dim=-1)

    def representations(self, X):
        """The (T, n, d) outputs of the last level, one per task."""
        task_in = [X] * self.n_tasks
        shared_in = X
        for level in range(self.n_levels):
            shared = torch.stack([e(shared_in).flatten(1) for e in self.shared_experts[level]])
            own = [torch.stack([e(task_in[t]).flatten(1) for e in experts])
                   for t, experts in enumerate(self.task_experts[level])]
            W, b = self.task_gate_weight[level], self.task_gate_bias[level]
            if level == 0:
                # Every gate of the first level reads the same input: one einsum.
                logits = torch.einsum("nd,ted->tne", X.flatten(1), W) + b.unsqueeze(1)
                outputs = [self._mix(logits[t], torch.cat([own[t], shared]))
                           for t in range(self.n_tasks)]
            else:
                outputs = [self._mix(task_in[t] @ W[t].T + b[t], torch.cat([own[t], shared]))
                           for t in range(self.n_tasks)]
            if level < self.n_levels - 1:
                Ws, bs = self.shared_gate_weight[level][0], self.shared_gate_bias[level][0]
                shared_in = self._mix(shared_in.flatten(1) @ Ws.T + bs,
                                      torch.cat(own + [shared]))
            task_in = outputs
        return torch.stack(task_in)

    def forward(self, X, task_ids=None):
        out = self.heads(self.representations(X))  # (n, T, C)
        if task_ids is None:
            return out
        return out[torch.arange(out.shape[0], device=out.device), task_ids]
