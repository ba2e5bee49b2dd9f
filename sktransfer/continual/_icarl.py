"""iCaRL: incremental classifier and representation learning (Rebuffi et al., 2017).

Three parts:

* **Exemplars chosen by herding.** A memory of ``memory_size`` samples is
  split equally over the classes seen (``memory_size // n_classes`` each,
  at least one). The exemplars of a class are chosen greedily from its
  L2-normalised features ``phi(x)``: the ``k``-th is the sample that brings
  the mean of the ``k`` chosen closest to the class mean ``mu``,

  ``p_k = argmin_x || mu - (phi(x) + sum_{j<k} phi(p_j)) / k ||``,

  so they come in order of priority, and shrinking a class's set for new
  classes keeps its first ones.
* **Training with distillation.** A task is learned on its samples together
  with every exemplar, on the cross-entropy plus ``alpha`` times the
  sigmoid binary cross-entropy between the network's logits of the *old*
  classes and the sigmoid of the previous network's (a frozen copy),
  summed over the old classes and averaged over the rows. (The paper uses
  the sigmoid loss for the new classes too; sktransfer keeps the softmax
  cross-entropy of its other strategies there.)
* **Nearest-mean-of-exemplars prediction.** After each task the mean
  ``mu_y`` of the normalised features of class ``y``'s exemplars is
  recomputed with the current network, and normalised; a sample is assigned
  to the nearest mean, ``argmin_y || phi(x) - mu_y ||``. ``predict_proba``
  is the softmax of ``-|| phi(x) - mu_y ||^2`` over the classes with
  exemplars. In the task scenario, exemplars and means are kept per task
  and a row is compared with its own task's classes only.

``phi`` is the network's trunk (``ContinualModule.features``).
"""

import copy

import torch
from torch.nn import functional as F

from ..base import MASK_VALUE
from ._strategies import _NON_NEGATIVE, _POSITIVE_INT, Plugin, Strategy, Task, concat_weights

__all__ = ["ICaRL", "herding_selection"]


def herding_selection(features, n):
    """The order in which iCaRL's herding picks ``n`` exemplars.

    Parameters
    ----------
    features : torch.Tensor of shape (m, d)
        The L2-normalised features of one class's samples.
    n : int
        Exemplars to pick (at most ``m``).

    Returns
    -------
    torch.Tensor of shape (min(n, m),)
        Row indices of ``features``, in the order picked: the ``k``-th makes
        the mean of the first ``k`` closest to the mean of all rows.

    Examples
    --------
    >>> import torch
    >>> from sktransfer.continual import herding_selection
    >>> f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    >>> herding_selection(f, 2).tolist()
    [2, 0]
    """
    features = features.double()
    mu = features.mean(0)
    n = min(int(n), features.shape[0])
    chosen = []
    running = torch.zeros_like(mu)
    available = torch.ones(features.shape[0], dtype=torch.bool)
    for k in range(1, n + 1):
        dist = ((mu - (running + features) / k) ** 2).sum(1)
        dist[~available] = float("inf")
        i = int(torch.argmin(dist))
        chosen.append(i)
        running += features[i]
        available[i] = False
    return torch.as_tensor(chosen, dtype=torch.long)


def _normalized_features(module, X, batch_size=512):
    out = []
    for start in range(0, X.shape[0], batch_size):
        out.append(F.normalize(module.features(X[start:start + batch_size]).float(), dim=1))
    return torch.cat(out)


class _ICaRLPlugin(Plugin):
    def __init__(self, memory_size, alpha, scenario):
        self.memory_size = memory_size
        self.alpha = float(alpha)
        self.scenario = scenario
        # (head, class) -> Task of the group's exemplars, in herding order
        self.exemplars = {}
        self.seen = None  # classes seen before the current task
        self.means = None  # (n_heads, n_classes, d) normalised class means
        self.has_mean = None  # (n_heads, n_classes)
        self.old = None
        self._task_index = None

    def _head(self, task_index):
        return task_index if self.scenario == "task" else 0

    def training_data(self, task):
        if not self.exemplars:
            return task
        parts = [task] + list(self.exemplars.values())
        return Task(task.index, torch.cat([p.X for p in parts]), torch.cat([p.y for p in parts]),
                    torch.cat([p.t for p in parts]),
                    concat_weights([(len(p), p.w) for p in parts]))

    def before_task(self, net, task):
        self._task_index = task.index
        if self.seen is None:
            self.seen = torch.zeros(net.module_.n_classes, dtype=torch.bool)
        if not bool(self.seen.any()):
            self.old = None
            return
        old = copy.deepcopy(net.module_).eval()
        old.requires_grad_(False)
        self.old = old

    def extra_loss(self, net, X, y_pred, y):
        if self.old is None or self.alpha == 0:
            return None
        device = net.training_device()
        Xi, ti = X["X"].to(device), X["task_ids"].to(device)
        rows = torch.ones(len(y), dtype=torch.bool, device=device)
        if self.scenario == "task":
            rows = ti != self._task_index  # the old network has no head for this task
            if not bool(rows.any()):
                return None
        with torch.no_grad():
            old = self.old(Xi[rows], ti[rows]).float()
        mask = self.seen.to(device)[None] & (old > MASK_VALUE / 2)
        target = torch.sigmoid(old)
        bce = F.binary_cross_entropy_with_logits(y_pred[rows].float(), target, reduction="none")
        return self.alpha * bce.masked_fill(~mask, 0.0).sum(1).mean()

    def after_task(self, net, task):
        self.old = None
        module = net.module_
        device = net.training_device()
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                new_groups = {}
                head = self._head(task.index)
                for c in torch.unique(task.y).tolist():
                    new_groups[(head, c)] = torch.nonzero(task.y == c).squeeze(1)
                groups = set(self.exemplars) | set(new_groups)
                per_group = max(1, self.memory_size // len(groups))
                exemplars = {key: Task(ex.index, ex.X[:per_group], ex.y[:per_group],
                                       ex.t[:per_group],
                                       None if ex.w is None else ex.w[:per_group])
                             for key, ex in self.exemplars.items() if key not in new_groups}
                for key, idx in new_groups.items():
                    if key in self.exemplars:  # a class learned again: its old exemplars too
                        ex = self.exemplars[key]
                        X = torch.cat([ex.X, task.X[idx]])
                        y, t = torch.cat([ex.y, task.y[idx]]), torch.cat([ex.t, task.t[idx]])
                        w = concat_weights([(len(ex), ex.w),
                                            (len(idx), None if task.w is None else task.w[idx])])
                    else:
                        X, y, t = task.X[idx], task.y[idx], task.t[idx]
                        w = None if task.w is None else task.w[idx]
                    feats = _normalized_features(module, X.to(device))
                    order = herding_selection(feats.cpu(), per_group)
                    exemplars[key] = Task(task.index, X[order], y[order], t[order],
                                          None if w is None else w[order])
                self.exemplars = exemplars
                self.seen = self.seen.clone()
                self.seen[torch.unique(task.y)] = True
                self._update_means(module, device)
        finally:
            module.train(was_training)

    def _update_means(self, module, device):
        n_heads = max(1, module.n_heads)
        sums = torch.zeros(n_heads, module.n_classes, module.width)
        counts = torch.zeros(n_heads, module.n_classes)
        for (head, c), ex in self.exemplars.items():
            feats = _normalized_features(module, ex.X.to(device)).cpu()
            sums[head, c] += feats.sum(0)
            counts[head, c] += feats.shape[0]
        self.has_mean = counts > 0
        self.means = F.normalize(sums / counts.clamp(min=1)[..., None], dim=-1)

    def nme_scores(self, net, X, task_ids):
        """``-|| phi(x) - mu_y ||^2`` for every class (masked without a mean)."""
        module = net.module_
        feats = F.normalize(module.features(X).float(), dim=1)
        heads = task_ids.long() if self.scenario == "task" else torch.zeros(
            X.shape[0], dtype=torch.long, device=feats.device)
        means = self.means.to(feats.device)[heads]  # (n, C, d)
        dist = ((feats[:, None, :] - means) ** 2).sum(-1)
        valid = self.has_mean.to(feats.device)[heads]
        return (-dist).masked_fill(~valid, MASK_VALUE)

    def prediction_scores(self, net, X, y_pred):
        if self.means is None:
            return y_pred
        device = y_pred.device
        scores = self.nme_scores(net, X["X"].to(device), X["task_ids"].to(device))
        # rows whose classes have no exemplars (a task not consolidated) keep the logits
        known = (scores > MASK_VALUE / 2).any(1, keepdim=True)
        return torch.where(known, scores.to(y_pred.dtype), y_pred)

    def rollback_shared(self):
        # exemplar sets are rebuilt, never written to, at every task
        return [tensor for ex in self.exemplars.values() for tensor in ex.tensors()]


class ICaRL(Strategy):
    """Incremental classifier and representation learning (iCaRL, Rebuffi et al., 2017).

    Herding exemplars, distillation and nearest-mean-of-exemplars prediction.

    Each task is learned on its samples and the exemplars of the classes
    seen before, with the cross-entropy plus ``alpha`` times the sigmoid
    binary cross-entropy distillation of the old classes' logits towards a
    frozen copy of the previous network. After the task, ``memory_size``
    exemplars are split equally over the classes seen (chosen by herding in
    the trunk's normalised feature space) and the class means of their
    features are recomputed. Predictions use the nearest mean of exemplars
    instead of the head (through the plugins' ``prediction_scores`` hook);
    ``predict_proba`` is the softmax of the negative squared distances. See
    :mod:`sktransfer.continual._icarl` for the rules.

    Parameters
    ----------
    memory_size : int, default=1000
        Exemplars kept in total (``memory_size // n_classes_seen`` per
        class, at least one).
    alpha : float, default=1.0
        Weight of the distillation term.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.continual import ContinualClassifier, ICaRL
    >>> from sktransfer.datasets import make_split_tasks
    >>> X, y = load_digits(return_X_y=True)
    >>> Xs, ys, t = make_split_tasks(X / 16, y, n_tasks=5)
    >>> clf = ContinualClassifier(strategy=ICaRL(memory_size=200), max_epochs=5, lr=0.01,
    ...                           random_state=0).fit(Xs, ys, task_ids=t)
    >>> len(clf.net_.plugins[0].exemplars), clf.score(Xs, ys) > 0.6
    (10, True)
    """

    _parameter_constraints: dict = {"memory_size": [_POSITIVE_INT], "alpha": [_NON_NEGATIVE]}
    _keeps_memory = True

    def __init__(self, memory_size=1000, alpha=1.0):
        self.memory_size = memory_size
        self.alpha = alpha

    def _build(self, scenario):
        return _ICaRLPlugin(int(self.memory_size), self.alpha, scenario)
