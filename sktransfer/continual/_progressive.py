"""Progressive neural networks (Rusu et al., 2016): a new column per task.

Each task gets its own MLP column and head. Column ``k``'s hidden layer
``l`` sees, besides its own previous layer, the previous layer of every
earlier column through a lateral connection:

``h_k^l = relu(W_k^l h_k^{l-1} + sum_{j<k} U_{k,j}^l h_j^{l-1})``

(the lateral inputs pass through a learned scale and a linear adapter, as in
the paper's MLP variant). Earlier columns are frozen when a new one is
added, so old tasks are never forgotten (their outputs do not change at
all); the price is a network that grows with every task and a task id at
prediction. This is the dynamic-architecture family of continual learning.
"""

import torch
from torch import nn

from ..base import MASK_VALUE, parameter_constraints
from ._base import BaseContinualClassifier

__all__ = ["ProgressiveNetworkClassifier"]



class _Column(nn.Module):
    def __init__(self, in_features, sizes, n_classes, n_previous):
        super().__init__()
        widths = [in_features] + list(sizes)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        # lateral[i][j]: from hidden layer i of column j into layer i + 1 (or the head)
        self.lateral = nn.ModuleList(
            nn.ModuleList(nn.Linear(widths[i + 1], widths[i + 2] if i + 2 < len(widths)
                                    else n_classes, bias=False) for _ in range(n_previous))
            for i in range(len(sizes))
        )
        self.alpha = nn.Parameter(torch.ones(len(sizes), max(n_previous, 1)))
        self.head = nn.Linear(widths[-1], n_classes)

    def forward(self, X, previous):
        """``previous``: per earlier column, its list of hidden activations."""
        h = X
        acts = []
        n_layers = len(self.layers)
        for i, layer in enumerate(self.layers):
            z = layer(h)
            if i > 0:
                for j, prev in enumerate(previous):
                    z = z + self.lateral[i - 1][j](self.alpha[i - 1, j] * prev[i - 1])
            h = torch.relu(z)
            acts.append(h)
        out = self.head(h)
        if n_layers:
            for j, prev in enumerate(previous):
                out = out + self.lateral[n_layers - 1][j](self.alpha[n_layers - 1, j]
                                                          * prev[n_layers - 1])
        return out, acts


class ProgressiveModule(nn.Module):
    """Columns with lateral connections, one per task."""

    def __init__(self, in_features, sizes, n_classes):
        super().__init__()
        self.in_features = in_features
        self.sizes = tuple(sizes)
        self.n_classes = n_classes
        self.columns = nn.ModuleList()
        self.register_buffer("head_mask", torch.zeros((0, n_classes), dtype=torch.bool))

    @property
    def n_heads(self):
        return len(self.columns)

    def add_task(self, task_index, class_mask):
        mask = torch.as_tensor(class_mask, dtype=torch.bool, device=self.head_mask.device)
        if task_index < self.n_heads:
            self.head_mask[task_index] |= mask
            return False
        for column in self.columns:
            column.requires_grad_(False)
        column = _Column(self.in_features, self.sizes, self.n_classes, len(self.columns))
        self.columns.append(column.to(self.head_mask.device))
        self.head_mask = torch.cat([self.head_mask, mask[None]])
        return True

    def _column_outputs(self, X, upto):
        outs, acts = [], []
        for k in range(upto + 1):
            out, a = self.columns[k](X, acts)
            outs.append(out)
            acts.append(a)
        return outs

    def forward(self, X, task_ids=None):
        X = X.flatten(1)
        if task_ids is None or self.n_heads == 1:
            task_ids = torch.zeros(X.shape[0], dtype=torch.long, device=X.device)
        top = int(task_ids.max())
        outs = self._column_outputs(X, top)
        if bool((task_ids == top).all()):
            out = outs[top]
        else:
            stacked = torch.stack(outs, 1)  # (n, K, C)
            out = stacked[torch.arange(X.shape[0], device=X.device), task_ids]
        return out.masked_fill(~self.head_mask[task_ids], MASK_VALUE)


@parameter_constraints()
class ProgressiveNetworkClassifier(BaseContinualClassifier):
    """Progressive neural network: one new MLP column per task, with lateral links.

    Every task gets a fresh column (an MLP with ``hidden_layer_sizes`` and a
    head) that also receives the hidden activations of all earlier columns
    through learned lateral connections; earlier columns are frozen, so the
    answers for old tasks never change (no forgetting, by construction) while
    their features can be reused. It works in the task-incremental scenario
    only: the task id picks the column at prediction. The network grows by
    one column per task (and lateral connections grow quadratically).

    Parameters
    ----------
    class_weight : None, "balanced" or dict, default=None
        Weights of the classes in the loss (multiplied with ``sample_weight``):
        ``"balanced"`` weighs each class by ``n_samples / (n_classes *
        count)`` over the labels given to ``fit`` (as scikit-learn's
        ``compute_class_weight``); a dict from label to weight (labels not in
        it weigh 1). ``partial_fit`` takes a dict only.
    hidden_layer_sizes : tuple of int, default=(100,)
        Hidden widths of each column.
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
    max_epochs : int, default=5
        Epochs per task.
    batch_size : int, default=64
    callbacks, train_split
        See :class:`~sktransfer.base.NeuralEstimatorMixin`.
    early_stopping, validation_fraction, n_iter_no_change, tol
        Default ``False, 0.1, 10, 1e-4``: early stopping as in scikit-learn's
        ``MLPClassifier`` on each task;
        see :class:`~sktransfer.base.NeuralEstimatorMixin`.
    device, random_state, verbose, net_params
        See :class:`~sktransfer.base.NeuralEstimatorMixin`.
    precision : {"fp32", "bf16"}, default="fp32"
        ``"bf16"``: bfloat16 mixed precision; see
        :class:`~sktransfer.base.NeuralEstimatorMixin`.

    Attributes
    ----------
    net_ : skorch.NeuralNet
    classes_ : ndarray
    tasks_ : list
    n_tasks_ : int
    task_classes_ : list of ndarray
    scenario_ : str
        Always ``"task"``.
    accuracy_matrix_ : ndarray of shape (n_tasks, n_tasks)
        Set by :meth:`fit` with ``eval_tasks``.
    n_features_in_ : int
    input_shape_ : tuple

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.continual import ProgressiveNetworkClassifier
    >>> from sktransfer.datasets import make_split_tasks
    >>> X, y = load_digits(return_X_y=True)
    >>> Xs, ys, t = make_split_tasks(X / 16, y, n_tasks=5)
    >>> clf = ProgressiveNetworkClassifier(hidden_layer_sizes=(32,), max_epochs=3,
    ...                                    random_state=0).fit(Xs, ys, task_ids=t)
    >>> len(clf.net_.module_.columns), clf.score(Xs, ys, task_ids=t) > 0.9
    (5, True)
    """

    _scenario_fixed = "task"

    def __init__(
        self,
        class_weight=None,
        hidden_layer_sizes=(100,),
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=5,
        batch_size=64,
        callbacks=None,
        train_split=None,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        device="cpu",
        random_state=None,
        verbose=0,
        net_params=None,
        precision="fp32",
    ):
        self.class_weight = class_weight
        self.hidden_layer_sizes = hidden_layer_sizes
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.callbacks = callbacks
        self.train_split = train_split
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.net_params = net_params
        self.precision = precision

    def _get_strategies(self):
        return []

    def _build_module(self, sample_shape, sizes, n_classes, scenario):
        n_in = 1
        for s in sample_shape:
            n_in *= int(s)
        return ProgressiveModule(n_in, sizes, n_classes)
