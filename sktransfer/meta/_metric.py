"""Shared parts of the metric-based few-shot learners (ProtoNet, MatchingNet, RelationNet).

A metric learner meta-trains an embedding network so that a fixed rule
(distance to class means, attention over the support set, a learned
relation score) classifies the query examples of an episode from their
embeddings. Adapting to a new task needs no gradient step: the support set
is embedded once and kept.
"""

import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import nn

from ..base import NeuralEstimatorMixin
from ._base import PREDICT_CHUNK, FewShotClassifierMixin

__all__ = ["MetricModule", "MetricFewShotClassifier", "class_means"]


def class_means(emb, labels, n_classes):
    """Mean embedding of every class (the prototypes), shape (n_classes, d)."""
    one_hot = F.one_hot(labels, n_classes).to(emb.dtype)
    return (one_hot.T @ emb) / one_hot.sum(0).clamp_min(1)[:, None]


class MetricModule(nn.Module):
    """An embedding network with an episode rule ``logits(fs, ys, fq, n_classes)``.

    Subclasses implement ``logits`` (and may override ``loss``). A
    meta-batch is processed task by task; one forward pass embeds a task's
    support and query sets together.
    """

    def __init__(self, trunk):
        super().__init__()
        self.trunk = trunk

    def embed(self, X):
        out = self.trunk(X)
        return out.reshape(out.shape[0], -1)

    def loss(self, logits, y, n_classes):
        return F.cross_entropy(logits, y)

    def meta_step(self, tasks, backward=True):
        Xs, ys, Xq, yq = tasks
        n_tasks = Xs.shape[0]
        total, correct = 0.0, 0.0
        for t in range(n_tasks):
            n_classes = int(ys[t].max()) + 1
            emb = self.embed(torch.cat([Xs[t], Xq[t]]))
            fs, fq = emb[:Xs.shape[1]], emb[Xs.shape[1]:]
            logits = self.logits(fs, ys[t], fq, n_classes)
            loss = self.loss(logits, yq[t], n_classes)
            if backward:
                (loss / n_tasks).backward()
            total += loss.detach()
            correct += (logits.argmax(1) == yq[t]).float().mean().item()
        return total / n_tasks, correct / n_tasks

    def _embed_chunks(self, X):
        return torch.cat([self.embed(X[i:i + PREDICT_CHUNK])
                          for i in range(0, X.shape[0], PREDICT_CHUNK)])

    def adapt_state(self, Xs, ys, n_classes, **options):
        with torch.no_grad():
            return {"support": self._embed_chunks(Xs), "labels": ys, "n_classes": n_classes}

    def predict_logits(self, state, X):
        return self.logits(state["support"], state["labels"], self.embed(X),
                           state["n_classes"])


class MetricFewShotClassifier(FewShotClassifierMixin, NeuralEstimatorMixin, ClassifierMixin,
                              BaseEstimator):
    """Base of the metric learners: episodic fit, adapt by embedding the support set."""

    def _check_params(self):
        pass

    def _build_module(self, sample_shape, sizes, n_way, *, k_shot, n_query, device):
        return self._metric_module(self._make_trunk(sample_shape, sizes), sample_shape)
