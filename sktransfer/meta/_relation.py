"""RelationClassifier: relation networks (Sung et al., 2018)."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ._learner import trunk_width
from ._metric import MetricFewShotClassifier, MetricModule, class_means

__all__ = ["RelationClassifier"]


class RelationModule(MetricModule):
    """A learned relation score between a query and each class's mean embedding.

    ``g([proto_c, f(q), |proto_c - f(q)|])`` is a small MLP with a sigmoid
    output, trained with the squared error to the one-hot target as in the paper.
    """

    def __init__(self, trunk, width, relation_hidden):
        super().__init__(trunk)
        self.relation = nn.Sequential(
            nn.Linear(3 * width, relation_hidden), nn.ReLU(), nn.Linear(relation_hidden, 1))

    def scores(self, protos, fq, exact=False):
        n_q, n_c = fq.shape[0], protos.shape[0]
        p = protos.unsqueeze(0).expand(n_q, -1, -1)
        q = fq.unsqueeze(1).expand(-1, n_c, -1)
        pairs = torch.cat([p, q, (p - q).abs()], dim=2)
        if exact:
            # float64 at prediction time: a row's scores do not depend on its position
            params = {k: v.double() for k, v in self.relation.named_parameters()}
            out = functional_call(self.relation, params, (pairs.double(),))
            return torch.sigmoid(out.squeeze(-1)).to(fq.dtype)
        return torch.sigmoid(self.relation(pairs).squeeze(-1))

    def logits(self, fs, ys, fq, n_classes):
        return self.scores(class_means(fs, ys, n_classes), fq)

    def loss(self, logits, y, n_classes):
        return F.mse_loss(logits, F.one_hot(y, n_classes).to(logits.dtype))

    def adapt_state(self, Xs, ys, n_classes, **options):
        state = super().adapt_state(Xs, ys, n_classes, **options)
        state["prototypes"] = class_means(state.pop("support"), ys, n_classes)
        return state

    def predict_logits(self, state, X):
        # log of the relation scores: predict_proba is the scores normalised to sum to 1
        scores = self.scores(state["prototypes"], self.embed(X), exact=True)
        return torch.log(scores.clamp_min(1e-12))


class RelationClassifier(MetricFewShotClassifier):
    """Relation networks: a learned similarity between a query and each class.

    The embeddings of a class's support examples are averaged (the paper
    sums them for K > 1 shots; the mean keeps the scale independent of K),
    concatenated with the query's embedding and scored in (0, 1) by a
    relation module, trained with the squared error to the one-hot target
    (Sung et al., 2018). The relation module here is an MLP on the
    concatenation of the two embeddings and their absolute difference (the
    paper's is convolutional on the two feature maps).
    ``predict_proba`` returns the relation scores normalised to sum to 1.

    Parameters
    ----------
    relation_hidden : int, default=32
        Width of the relation module's hidden layer.
    n_way : int or None, default=None
    k_shot : int, default=1
    n_query : int or None, default=None
    episodes_per_epoch : int, default=100
    module : None, nn.Module class, factory or instance, default=None
        The embedding network (MLP for 2-D X, Conv4 for images).
    hidden_layer_sizes : tuple of int, default=(64,)
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
    max_epochs : int, default=10
    batch_size : int, default=1
        Episodes per optimiser step.
    callbacks, train_split, device, random_state, verbose, net_params
        See :class:`~sktransfer.base.NeuralEstimatorMixin`.

    Attributes
    ----------
    net_ : skorch.NeuralNet
    classes_ : ndarray
    n_way_, n_query_ : int
    adapted_state_ : dict
        The class prototypes ``predict`` scores against.
    n_features_in_ : int
    input_shape_ : tuple

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.meta import RelationClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> rel = RelationClassifier(max_epochs=5, random_state=0).fit(X[y < 5], y[y < 5])
    >>> new = rel.adapt(X[y >= 5][:50], y[y >= 5][:50])
    >>> new.score(X[y >= 5][50:], y[y >= 5][50:]) > 0.4
    True
    """

    def __init__(
        self,
        relation_hidden=32,
        n_way=None,
        k_shot=1,
        n_query=None,
        episodes_per_epoch=100,
        module=None,
        hidden_layer_sizes=(64,),
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=10,
        batch_size=1,
        callbacks=None,
        train_split=None,
        device="cpu",
        random_state=None,
        verbose=0,
        net_params=None,
    ):
        self.relation_hidden = relation_hidden
        self.n_way = n_way
        self.k_shot = k_shot
        self.n_query = n_query
        self.episodes_per_epoch = episodes_per_epoch
        self.module = module
        self.hidden_layer_sizes = hidden_layer_sizes
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.callbacks = callbacks
        self.train_split = train_split
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.net_params = net_params

    def _check_params(self):
        from ._episodes import _check_positive_int

        _check_positive_int(self.relation_hidden, "relation_hidden", 1)

    def _metric_module(self, trunk, sample_shape):
        return RelationModule(trunk, trunk_width(trunk, sample_shape), int(self.relation_hidden))
