"""Adaptation strategies of :class:`~sktransfer.meta.BaselineFewShotClassifier`.

``BaselineFewShotClassifier.adapt`` trains a new head on the support set's
embeddings (``adapt_steps`` full-batch Adam steps at ``adapt_lr``). *How* it
trains is a small strategy object, an :class:`Adaptation`, whose hooks the
head-training loop calls:

``needs_query`` (class attribute)
    whether the strategy reads the unlabelled query set (a transductive
    method): ``adapt`` then needs ``X_query``;
``finetune_backbone`` (attribute)
    whether the trunk is trained too (else only the head);
``init_head(state, feats, y, n_classes, kind)``
    the head before the first step (default: as initialised, unchanged);
``loss(support_logits, y_support, query_logits)``
    what each step descends (default: the support set's cross-entropy;
    ``query_logits`` is ``None`` without a query set).

The base class is plain (inductive) fine-tuning of the head; the
transductive methods of the package override ``loss``:
:class:`TransductiveFineTuning` (Dhillon et al., 2020) and :class:`TIM`
(Boudiaf et al., 2020, the gradient-descent solver TIM-GD).
"""

from numbers import Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval

__all__ = ["ADAPTATIONS", "TIM", "Adaptation", "TransductiveFineTuning", "get_adaptation",
           "marginal_entropy", "mean_entropy", "prototype_head"]

_NON_NEGATIVE = Interval(Real, 0, np.inf, closed="left")


def mean_entropy(logits):
    """Mean over the rows of the entropy of ``softmax(logits)`` (in nats): the
    conditional entropy :math:`H(Y \\mid X)` of the predictions."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(1).mean()


def marginal_entropy(logits):
    """Entropy of the mean prediction :math:`\\bar p = \\frac1n\\sum_i p_i` (in nats):
    the marginal entropy :math:`H(Y)` of the predictions."""
    p = F.softmax(logits, dim=1).mean(0)
    return -(p * torch.log(p.clamp_min(1e-12))).sum()


def prototype_head(state, feats, y, n_classes):
    """``state`` with its ``weight`` set to the class means of ``feats`` (the
    support-based initialisation of the transductive methods)."""
    one_hot = F.one_hot(y, n_classes).to(feats.dtype)
    means = (one_hot.T @ feats) / one_hot.sum(0).clamp_min(1)[:, None]
    return {**state, "weight": means.detach().clone()}


class Adaptation(BaseEstimator):
    """How :meth:`BaselineFewShotClassifier.adapt` trains its new head (the base).

    As it is, plain fine-tuning: the head (only) descends the support set's
    cross-entropy. A subclass overrides the hooks below, which are documented
    no-ops (``loss`` is the cross-entropy); the estimator calls them directly.
    A strategy is a configuration object: its parameters are in
    ``_parameter_constraints``, validated at every ``adapt``, and searchable
    as ``adaptation__<name>``.

    Attributes
    ----------
    needs_query : bool
        Class attribute: the strategy reads the unlabelled query set, so
        ``adapt`` must get ``X_query``. False here.
    finetune_backbone : bool
        Train the trunk as well as the head. False here.

    Examples
    --------
    >>> import torch
    >>> from sktransfer.meta import Adaptation
    >>> logits, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    >>> float(Adaptation().loss(logits, y, None)) == float(torch.nn.functional.cross_entropy(
    ...     logits, y))
    True
    """

    _parameter_constraints = {}
    needs_query = False
    finetune_backbone = False

    def init_head(self, state, feats, y, n_classes, kind):
        """The head before the first step.

        Parameters
        ----------
        state : dict of str to Tensor
            The freshly initialised head: ``weight`` (n_classes, d) and
            ``bias`` (linear head) or ``scale`` (cosine head).
        feats : Tensor of shape (n_support, d)
            The support embeddings (under the pre-trained trunk).
        y : Tensor of shape (n_support,)
            Their labels ``0 .. n_classes - 1``.
        n_classes : int
        kind : {"linear", "cosine"}

        Returns
        -------
        dict
            The head to start from; the default returns ``state`` unchanged.
        """
        return state

    def loss(self, support_logits, y_support, query_logits):
        """The loss of one step.

        Parameters
        ----------
        support_logits : Tensor of shape (n_support, n_classes)
        y_support : Tensor of shape (n_support,)
        query_logits : Tensor of shape (n_query, n_classes) or None
            The logits of the unlabelled query set (``None`` without one).

        Returns
        -------
        Tensor
            A scalar; the default is the support cross-entropy.
        """
        return F.cross_entropy(support_logits, y_support)


class TransductiveFineTuning(Adaptation):
    """Transductive fine-tuning (Dhillon et al., 2020).

    Each step descends the support set's cross-entropy plus
    ``entropy_weight`` times the mean entropy of the predictions on the
    unlabelled query set, which pushes the decision boundaries away from
    the query examples; the head starts from the class means of the support
    embeddings (the paper's support-based initialisation):

    .. math:: \\mathcal L = \\mathrm{CE}_S
              + \\beta\\, \\frac{1}{|Q|}\\sum_{x \\in Q} H(p(\\cdot \\mid x)).

    Parameters
    ----------
    entropy_weight : float, default=1.0
        :math:`\\beta`, the weight of the query entropy (the paper's 1).
    finetune_backbone : bool, default=False
        Also fine-tune the trunk (the paper fine-tunes the whole network);
        the trunk runs in evaluation mode (batch norm on its running
        statistics) and the adapted estimator keeps its own copy of the
        trunk's weights.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.meta import BaselineFewShotClassifier, TransductiveFineTuning
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> base = BaselineFewShotClassifier(adaptation=TransductiveFineTuning(), max_epochs=5,
    ...                                  random_state=0).fit(X[y < 5], y[y < 5])
    >>> new, test = X[y >= 5], y[y >= 5]
    >>> adapted = base.adapt(new[:50], test[:50], X_query=new[50:])
    >>> adapted.score(new[50:], test[50:]) > 0.6
    True
    """

    _parameter_constraints = {"entropy_weight": [_NON_NEGATIVE],
                              "finetune_backbone": ["boolean"]}
    needs_query = True

    def __init__(self, entropy_weight=1.0, finetune_backbone=False):
        self.entropy_weight = entropy_weight
        self.finetune_backbone = finetune_backbone

    def init_head(self, state, feats, y, n_classes, kind):
        return prototype_head(state, feats, y, n_classes)

    def loss(self, support_logits, y_support, query_logits):
        loss = F.cross_entropy(support_logits, y_support)
        if query_logits is not None:
            loss = loss + self.entropy_weight * mean_entropy(query_logits)
        return loss


class TIM(Adaptation):
    """Transductive information maximisation, gradient-descent solver (TIM-GD;
    Boudiaf et al., 2020).

    Each step descends the weighted support cross-entropy minus the mutual
    information between the query examples and their predictions, written
    as its two entropies:

    .. math:: \\mathcal L = \\lambda\\, \\mathrm{CE}_S - \\mu\\, H(\\bar p_Q)
              + \\alpha\\, \\frac{1}{|Q|}\\sum_{x \\in Q} H(p(\\cdot \\mid x)),

    where :math:`\\bar p_Q` is the mean prediction over the query set: a
    small conditional entropy makes confident predictions, a large marginal
    entropy keeps the classes balanced (no collapse onto one class). The
    head starts from the class means of the support embeddings (as in the
    paper, whose classifier is initialised with the prototypes).

    Parameters
    ----------
    ce_weight : float, default=0.1
        :math:`\\lambda`, the weight of the support cross-entropy.
    marginal_weight : float, default=1.0
        :math:`\\mu`, the weight of the marginal entropy (maximised).
    conditional_weight : float, default=0.1
        :math:`\\alpha`, the weight of the conditional entropy (minimised).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.meta import BaselineFewShotClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> base = BaselineFewShotClassifier(head="cosine", adaptation="tim", max_epochs=5,
    ...                                  random_state=0).fit(X[y < 5], y[y < 5])
    >>> new, test = X[y >= 5], y[y >= 5]
    >>> adapted = base.adapt(new[:50], test[:50], X_query=new[50:])
    >>> adapted.score(new[50:], test[50:]) > 0.6
    True
    """

    _parameter_constraints = {"ce_weight": [_NON_NEGATIVE],
                              "marginal_weight": [_NON_NEGATIVE],
                              "conditional_weight": [_NON_NEGATIVE]}
    needs_query = True

    def __init__(self, ce_weight=0.1, marginal_weight=1.0, conditional_weight=0.1):
        self.ce_weight = ce_weight
        self.marginal_weight = marginal_weight
        self.conditional_weight = conditional_weight

    def init_head(self, state, feats, y, n_classes, kind):
        return prototype_head(state, feats, y, n_classes)

    def loss(self, support_logits, y_support, query_logits):
        loss = self.ce_weight * F.cross_entropy(support_logits, y_support)
        if query_logits is not None:
            loss = (loss - self.marginal_weight * marginal_entropy(query_logits)
                    + self.conditional_weight * mean_entropy(query_logits))
        return loss


#: The names ``adaptation=`` accepts, and the strategy each builds.
ADAPTATIONS = {"finetune": Adaptation, "transductive": TransductiveFineTuning, "tim": TIM}


def get_adaptation(adaptation):
    """The :class:`Adaptation` object of a name or an object (validated)."""
    if isinstance(adaptation, str):
        adaptation = ADAPTATIONS[adaptation]()
    if not isinstance(adaptation, Adaptation):
        raise TypeError(f"adaptation must be one of {sorted(ADAPTATIONS)} or an Adaptation "
                        f"object; got {type(adaptation).__name__}")
    adaptation._validate_params()
    return adaptation
