"""RelationClassifier: relation networks (Sung et al., 2018)."""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..base import parameter_constraints
from ._augmentation import AUGMENT_CONSTRAINT
from ._base import META_PARAMETER_CONSTRAINTS, embed_in_chunks
from ._learner import trunk_output_shape, trunk_width
from ._metric_learner import MetricFewShotClassifier, MetricModule, class_means

__all__ = ["RelationClassifier"]

RELATIONS = ("auto", "conv", "mlp")
#: Filters of the convolutional relation module's two blocks (the paper's 64).
RELATION_CHANNELS = 64
#: Query-class pairs scored per forward pass at prediction (bounds the memory).
PAIRS_PER_CHUNK = 1024
#: Images embedded per float64 forward pass at prediction.
EXACT_CHUNK = 128


def _double_call(module, *args):
    """``module(*args)`` in float64, weights and buffers cast on the fly.

    At prediction time a row's result then does not depend on which other
    rows share its batch (float32 kernels may sum in a batch-dependent order).
    """
    state = {k: (v.double() if v.is_floating_point() else v)
             for k, v in [*module.named_parameters(), *module.named_buffers()]}
    return functional_call(module, state, tuple(a.double() for a in args))


def feature_map_trunk(sample_shape):
    """The paper's embedding for images: four ``conv3x3(64) -> batch norm -> ReLU``
    blocks of :class:`~sktransfer.modules.Conv4`, with the 2x2 max-pool after the
    first two blocks only and no flattening (28x28 images give 64x7x7 maps)."""
    from ..modules import Conv4

    side = min(sample_shape[1:])
    n_pool = int(min(2, max(0, np.floor(np.log2(max(side, 1))))))
    conv4 = Conv4(in_channels=sample_shape[0], n_blocks=4, image_size=tuple(sample_shape[1:]))
    layers, pools = [], 0
    for layer in conv4.features:
        if isinstance(layer, nn.Flatten):
            continue
        if isinstance(layer, nn.MaxPool2d):
            pools += 1
            if pools > n_pool:
                continue
        layers.append(layer)
    return nn.Sequential(*layers)


class RelationModule(MetricModule):
    """A learned relation score between a query and each class's mean embedding.

    ``g([proto_c, f(q), |proto_c - f(q)|])`` is a small MLP with a sigmoid
    output, trained with the squared error to the one-hot target as in the paper.
    """

    def __init__(self, trunk, width, relation_hidden):
        super().__init__(trunk)
        self.relation = nn.Sequential(
            nn.Linear(3 * width, relation_hidden), nn.ReLU(), nn.Linear(relation_hidden, 1))

    def _pairs(self, protos, fq):
        n_q, n_c = fq.shape[0], protos.shape[0]
        p = protos.unsqueeze(0).expand(n_q, -1, -1)
        q = fq.unsqueeze(1).expand(-1, n_c, -1)
        return torch.cat([p, q, (p - q).abs()], dim=2)

    def scores(self, protos, fq, exact=False):
        pairs = self._pairs(protos, fq)
        if exact:
            # float64 at prediction time: a row's scores do not depend on its position
            out = _double_call(self.relation, pairs)
            return torch.sigmoid(out.squeeze(-1)).to(fq.dtype)
        return torch.sigmoid(self.relation(pairs).squeeze(-1))

    def prototypes(self, fs, ys, n_classes):
        return class_means(fs, ys, n_classes)

    def support_state(self, fs, ys, n_classes):
        return {"labels": ys, "n_classes": n_classes,
                "prototypes": self.prototypes(fs, ys, n_classes)}

    def episode_logits(self, state, fq):
        return self.scores(state["prototypes"], fq)

    def query_logits(self, state, fq):
        # log of the relation scores: predict_proba is the scores normalised to sum to 1
        scores = self.scores(state["prototypes"], fq, exact=True)
        return torch.log(scores.clamp_min(1e-12))

    def loss(self, logits, y, n_classes):
        return F.mse_loss(logits, F.one_hot(y, n_classes).to(logits.dtype))


class ConvRelation(nn.Module):
    """The paper's relation module: scores ``(n_q, n_c)`` of query and class feature maps.

    The class's and the query's maps ``(C, H, W)`` are concatenated along the
    channels (``2C``) and scored by two ``conv3x3(64) -> batch norm -> ReLU ->
    max-pool(2)`` blocks (no pooling of a map already 1 pixel wide), then
    ``Linear(-> hidden) -> ReLU -> Linear(-> 1)`` (the logit of the score).
    The first convolution of a concatenation is the sum of a convolution of
    each half, so it is computed once per class and once per query and
    summed for every pair: the same function as convolving all ``n_q * n_c``
    concatenated pairs, at a fraction of the cost.
    """

    def __init__(self, map_shape, hidden):
        from ..modules import BatchNorm2d

        super().__init__()
        channels, h, w = map_shape
        self.pair_conv = nn.Conv2d(2 * channels, RELATION_CHANNELS, kernel_size=3, padding=1)
        layers = []
        for block in range(2):
            if block:
                layers.append(nn.Conv2d(RELATION_CHANNELS, RELATION_CHANNELS, kernel_size=3,
                                        padding=1))
            pool = min(h, w) >= 2
            layers += [BatchNorm2d(RELATION_CHANNELS), nn.ReLU(),
                       nn.MaxPool2d(2) if pool else nn.Identity()]
            if pool:
                h, w = math.floor(h / 2), math.floor(w / 2)
        self.blocks = nn.Sequential(*layers, nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(RELATION_CHANNELS * h * w, hidden), nn.ReLU(),
                                nn.Linear(hidden, 1))

    def forward(self, protos, fq):
        c = protos.shape[1]
        weight = self.pair_conv.weight
        by_class = F.conv2d(protos, weight[:, :c], self.pair_conv.bias, padding=1)
        by_query = F.conv2d(fq, weight[:, c:], None, padding=1)
        pairs = (by_query.unsqueeze(1) + by_class.unsqueeze(0)).flatten(0, 1)
        return self.fc(self.blocks(pairs)).reshape(fq.shape[0], protos.shape[0])


class ConvRelationModule(RelationModule):
    """Relation networks on feature maps: the trunk returns ``(n, C, H, W)``, a
    class's map is the mean of its support maps, :class:`ConvRelation` scores."""

    def __init__(self, trunk, map_shape, relation_hidden):
        MetricModule.__init__(self, trunk)
        self.relation = ConvRelation(map_shape, relation_hidden)

    def embed(self, X):
        return self.trunk(X)

    def embed_rows(self, X):
        # float64, so that a row's map does not depend on the rows beside it (the
        # support and the query maps go through the same arithmetic); in small
        # chunks, float64 maps being large
        return embed_in_chunks(lambda x: _double_call(self.trunk, x).to(x.dtype), X,
                               EXACT_CHUNK)

    def prototypes(self, fs, ys, n_classes):
        flat = class_means(fs.flatten(1), ys, n_classes)
        return flat.reshape(n_classes, *fs.shape[1:])

    def scores(self, protos, fq, exact=False):
        if not exact:
            return torch.sigmoid(self.relation(protos, fq))
        step = max(1, PAIRS_PER_CHUNK // protos.shape[0])
        outs = [_double_call(self.relation, protos, fq[i:i + step])
                for i in range(0, fq.shape[0], step)]
        return torch.sigmoid(torch.cat(outs)).to(fq.dtype)


@parameter_constraints(**META_PARAMETER_CONSTRAINTS, augment=AUGMENT_CONSTRAINT)
class RelationClassifier(MetricFewShotClassifier):
    """Relation networks: a learned similarity between a query and each class.

    The embeddings of a class's support examples are averaged (the paper
    sums them for K > 1 shots; the mean keeps a class's input to the
    relation module on the scale of one example's, so that a model trained
    1-shot scores 5-shot support sets as well), paired with the query's
    embedding and scored in (0, 1) by a relation module, trained with the
    squared error to the one-hot target (Sung et al., 2018).
    ``predict_proba`` returns the relation scores normalised to sum to 1.

    With ``relation="conv"`` (the default for images) the module follows the
    paper's Omniglot architecture: the embedding is four ``conv3x3(64) ->
    batch norm -> ReLU`` blocks with a 2x2 max-pool after the first two only,
    so 28x28 images give 64x7x7 feature maps (the paper's unpadded
    convolutions give 5x5); the class's and the query's maps are concatenated
    along the channels (128) and the relation module is two ``conv3x3(64) ->
    batch norm -> ReLU -> max-pool(2)`` blocks, then ``Linear(-> 8) -> ReLU
    -> Linear(8 -> 1) -> sigmoid``. With ``relation="mlp"`` it is an MLP on
    the concatenation of the two flat embeddings and their absolute difference.

    Parameters
    ----------
    relation_hidden : int or None, default=None
        Width of the relation module's hidden fully connected layer; ``None``
        is the paper's 8 for ``"conv"`` and 32 for ``"mlp"``.
    relation : {"auto", "conv", "mlp"}, default="auto"
        The relation module. ``"conv"`` scores feature maps as in the paper:
        with ``module=None`` and image X, the embedding is the feature-map
        network above; a user ``module`` must then return maps ``(n, C, H, W)``.
        ``"mlp"`` scores flat embeddings (image X then get the default
        :class:`~sktransfer.modules.Conv4` trunk, flattened). ``"auto"`` is
        ``"conv"`` for image X with ``module=None`` or a module that returns
        feature maps, else ``"mlp"``.
    n_way : int or None, default=None
    k_shot : int, default=1
    n_query : int or None, default=None
    episodes_per_epoch : int, default=100
    module : None, nn.Module class, factory or instance, default=None
        The embedding network (MLP for 2-D X; for images see ``relation``).
    hidden_layer_sizes : tuple of int, default=(64,)
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
    max_epochs : int, default=10
    batch_size : int, default=1
        Episodes per optimiser step.
    callbacks, train_split, device, random_state, verbose, net_params
        See :class:`~sktransfer.base.NeuralEstimatorMixin`.

    augment : {None, "shift"} or callable, default=None
        Training-time augmentation of the images of meta-training episodes
        (support and query); ``"shift"`` is :class:`~sktransfer.meta.RandomShift`
        ``()``, a callable maps a tensor (n, C, H, W) to one of the same shape.

    Attributes
    ----------
    net_ : skorch.NeuralNet
    classes_ : ndarray
    n_way_, n_query_ : int
    relation_ : str
        The relation module used, ``"conv"`` or ``"mlp"``.
    adapted_state_ : dict
        The class prototypes ``predict`` scores against (mean feature maps
        with ``relation_="conv"``).
    n_features_in_ : int
    input_shape_ : tuple

    Notes
    -----
    At prediction the relation module (and, for ``"conv"``, the embedding)
    runs in float64, so that a row's scores do not depend on which other rows
    share its batch; training runs in float32.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.meta import RelationClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> rel = RelationClassifier(max_epochs=5, random_state=0).fit(X[y < 5], y[y < 5])
    >>> rel.relation_
    'mlp'
    >>> new = rel.adapt(X[y >= 5][:50], y[y >= 5][:50])
    >>> new.score(X[y >= 5][50:], y[y >= 5][50:]) > 0.4
    True
    """

    def __init__(
        self,
        relation_hidden=None,
        relation="auto",
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
        augment=None,
    ):
        self.relation_hidden = relation_hidden
        self.relation = relation
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
        self.augment = augment

    def _build_module(self, sample_shape, sizes, n_way, *, k_shot, n_query, device):
        relation = self.relation
        if relation != "mlp" and self.module is None and len(sample_shape) == 3:
            trunk = feature_map_trunk(sample_shape)
        else:
            trunk = self._make_trunk(sample_shape, sizes)
        if relation != "mlp":
            out_shape = trunk_output_shape(trunk, sample_shape)
            if relation == "auto":
                relation = "conv" if len(out_shape) == 3 else "mlp"
            elif len(out_shape) != 3:
                raise ValueError(
                    "relation='conv' needs feature maps: image X of shape (n, C, H, W) with "
                    "module=None, or a module that returns (n, C, H, W); the embedding has "
                    f"sample shape {out_shape}"
                )
        if relation == "conv":
            hidden = 8 if self.relation_hidden is None else int(self.relation_hidden)
            return ConvRelationModule(trunk, out_shape, hidden)
        hidden = 32 if self.relation_hidden is None else int(self.relation_hidden)
        return RelationModule(trunk, trunk_width(trunk, sample_shape), hidden)

    def _after_fit(self, net):
        self.relation_ = "conv" if isinstance(net.module_, ConvRelationModule) else "mlp"
