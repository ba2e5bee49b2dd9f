"""Shared parts of the metric-based few-shot learners (ProtoNet, MatchingNet, RelationNet,
the black-box reader).

A metric learner meta-trains an embedding network so that a fixed rule
(distance to class means, attention over the support set, a learned
relation score, a sequence model reading the support set) classifies the
query examples of an episode from their embeddings. Adapting to a new task
needs no gradient step: the support set is embedded once and kept.

Every learner encodes an episode the same way (:func:`encode_support_query`):
the support rows become a *support state* (the learner's
:meth:`~MetricModule.support_state`: prototypes, embeddings in context, the
embeddings and their labels), the query rows become embeddings, and the
learner's rule scores the queries against the support state
(:meth:`~MetricModule.episode_logits` in meta-training,
:meth:`~MetricModule.query_logits` at prediction).

Test-time augmentation (the learners' ``tta`` parameter, shared with the
batch learners in :mod:`sktransfer.meta._test_time`) is one strategy of that
path: with ``tta="shift"`` an image's embedding at adapt and predict time is
the mean of its embeddings over the 9 one-pixel shifts of the image
(:func:`shift_averaged`); meta-training is unchanged.
"""

from abc import ABCMeta, abstractmethod

import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..base import NeuralEstimatorMixin
from ._base import FewShotClassifierMixin, embed_in_chunks
from ._test_time import (
    TTA_CONSTRAINT,
    TTA_OPTIONS,
    ShiftAveragingMixin,
    shift_averaged,
    shift_image,
)

__all__ = ["TTA_CONSTRAINT", "TTA_OPTIONS", "MetricFewShotClassifier", "MetricModule",
           "class_means", "encode_support_query", "shift_averaged", "shift_image"]


def class_means(emb, labels, n_classes):
    """Mean embedding of every class (the prototypes), shape (n_classes, d)."""
    one_hot = F.one_hot(labels, n_classes).to(emb.dtype)
    return (one_hot.T @ emb) / one_hot.sum(0).clamp_min(1)[:, None]


def encode_support_query(module, Xs=None, ys=None, Xq=None, n_classes=None, *,
                         meta_training=False):
    """``(support_state, query_embeddings)`` of an episode, the one way every metric
    learner computes them.

    * Meta-training (``meta_training=True``, both sets given): one forward
      pass of ``module.embed`` over the support and the query rows together
      (so that both see the same batch statistics), split back.
    * Adapting (``Xs`` given) and predicting (``Xq`` given): each set alone,
      through ``module.embed_rows`` (in chunks, and for some learners in
      float64, so that a row's embedding does not depend on the rows beside
      it); the support set without gradients.

    The support embeddings become ``module.support_state(fs, ys, n_classes)``;
    an absent set is ``None``. With ``module.tta == "shift"`` the rows to
    adapt to and to predict are embedded by :func:`shift_averaged`.
    """
    if meta_training:
        emb = module.embed(torch.cat([Xs, Xq]))
        fs, fq = emb[:Xs.shape[0]], emb[Xs.shape[0]:]
        return module.support_state(fs, ys, n_classes), fq
    state = fq = None
    if getattr(module, "tta", None) == "shift":
        def embed_rows(X):
            return shift_averaged(module.embed_rows, X)
    else:
        embed_rows = module.embed_rows
    if Xs is not None:
        with torch.no_grad():
            state = module.support_state(embed_rows(Xs), ys, n_classes)
    if Xq is not None:
        fq = embed_rows(Xq)
    return state, fq


class MetricModule(nn.Module, metaclass=ABCMeta):
    """An embedding network with an episode rule.

    Subclasses implement :meth:`query_logits`, and may override
    :meth:`support_state` (default: the embeddings and their labels),
    :meth:`episode_logits` (default: :meth:`query_logits`), :meth:`loss`
    (default: cross-entropy), :meth:`embed` and :meth:`embed_rows`. The
    meta-step, adaptation and prediction are written once, here, on
    :func:`encode_support_query`. A meta-batch is processed task by task.
    ``tta`` is the test-time augmentation of the rows to adapt to and to
    predict (``None`` or ``"shift"``, see :func:`encode_support_query`); the
    estimator sets it for each adapt and predict call.
    """

    tta = None

    def __init__(self, trunk):
        super().__init__()
        self.trunk = trunk

    # ---------------------------------------------------------------- hooks
    def embed(self, X):
        """The embeddings of a batch of rows (one forward pass), shape (n, d)."""
        out = self.trunk(X)
        return out.reshape(out.shape[0], -1)

    def embed_rows(self, X):
        """The embeddings of rows to adapt to or to predict (in chunks)."""
        return embed_in_chunks(self.embed, X)

    def support_state(self, fs, ys, n_classes):
        """What the rule keeps of a support set's embeddings (a dict; the adapted state)."""
        return {"support": fs, "labels": ys, "n_classes": n_classes}

    @abstractmethod
    def query_logits(self, state, fq):
        """The logits of the query embeddings ``fq`` at prediction (every rule defines it)."""

    def episode_logits(self, state, fq):
        """The logits of the query embeddings in a meta-training episode (what
        :meth:`loss` reads). Default: :meth:`query_logits`."""
        return self.query_logits(state, fq)

    def loss(self, logits, y, n_classes):
        return F.cross_entropy(logits, y)

    # ------------------------------------------------------------- template
    def meta_step(self, tasks, backward=True):
        Xs, ys, Xq, yq = tasks
        n_tasks = Xs.shape[0]
        total, correct = 0.0, 0.0
        for t in range(n_tasks):
            n_classes = int(ys[t].max()) + 1
            state, fq = encode_support_query(self, Xs[t], ys[t], Xq[t], n_classes,
                                             meta_training=True)
            logits = self.episode_logits(state, fq)
            loss = self.loss(logits, yq[t], n_classes)
            if backward:
                (loss / n_tasks).backward()
            total += loss.detach()
            correct += (logits.argmax(1) == yq[t]).float().mean().item()
        return total / n_tasks, correct / n_tasks

    def adapt_state(self, Xs, ys, n_classes, **options):
        return encode_support_query(self, Xs, ys, n_classes=n_classes)[0]

    def predict_logits(self, state, X):
        return self.query_logits(state, encode_support_query(self, Xq=X)[1])


class MetricFewShotClassifier(ShiftAveragingMixin, FewShotClassifierMixin, NeuralEstimatorMixin,
                              ClassifierMixin, BaseEstimator):
    """Base of the metric learners: episodic fit, adapt by embedding the support set."""

    def _check_params(self):
        pass

    def _build_module(self, sample_shape, sizes, n_way, *, k_shot, n_query, device):
        self._check_tta(sample_shape)
        return self._metric_module(self._make_trunk(sample_shape, sizes), sample_shape)

    def _adapt_module(self, net, Xs, ys_enc, n_classes):
        self._check_tta(Xs.shape[1:])
        with self._tta(net.module_):
            return super()._adapt_module(net, Xs, ys_enc, n_classes)

    def _logits(self, X):
        check_is_fitted(self, "net_")
        self._check_tta(self.input_shape_)
        with self._tta(self.net_.module_):
            return super()._logits(X)
