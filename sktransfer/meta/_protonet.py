"""PrototypicalClassifier: prototypical networks (Snell, Swersky & Zemel, 2017)."""

import torch

from ..base import parameter_constraints
from ._augmentation import AUGMENT_CONSTRAINT
from ._base import META_PARAMETER_CONSTRAINTS_EPOCH_OR_NONE
from ._metric_learner import TTA_CONSTRAINT, MetricFewShotClassifier, MetricModule, class_means

__all__ = ["PrototypicalClassifier"]


class ProtoModule(MetricModule):
    """Logits are negative squared Euclidean distances to the class means."""

    def support_state(self, fs, ys, n_classes):
        return {"labels": ys, "n_classes": n_classes,
                "prototypes": class_means(fs, ys, n_classes)}

    def query_logits(self, state, fq):
        return -torch.cdist(fq, state["prototypes"]).pow(2)


@parameter_constraints(**META_PARAMETER_CONSTRAINTS_EPOCH_OR_NONE, augment=AUGMENT_CONSTRAINT,
                       tta=TTA_CONSTRAINT)
class PrototypicalClassifier(MetricFewShotClassifier):
    """Prototypical networks: classify by the distance to each class's mean embedding.

    ``fit`` meta-trains the embedding network on N-way K-shot episodes: the
    prototype of a class is the mean embedding of its support examples, and
    a query's logits are its negative squared Euclidean distances to the
    prototypes (Snell, Swersky & Zemel, 2017). :meth:`adapt` embeds a
    support set of any number of classes (no gradient step); after ``fit``,
    ``predict`` uses prototypes of the classes of ``fit`` from up to 20
    training rows per class (at most about 1000 rows in all).

    Parameters
    ----------
    n_way : int or None, default=None
        Classes per training episode; ``None`` uses ``min(20, n)`` where ``n``
        counts the classes with more than ``k_shot`` examples (in the largest
        group when ``groups`` is given): training with more ways than testing
        helps, as in the paper's 60-way training.
    k_shot : int, default=1
    n_query : int or None, default=None
        Query examples per class; ``None`` uses up to 5.
    episodes_per_epoch : int or None, default=None
        Episodes per skorch epoch; ``None`` uses ``500 // n_way`` (25 twenty-way
        or 100 five-way episodes), so that an epoch draws about 500 classes
        whatever the way.
    module : None, nn.Module class, factory or instance, default=None
        The embedding network: an MLP with ``hidden_layer_sizes`` for 2-D X,
        :class:`~sktransfer.modules.Conv4` for images.
    hidden_layer_sizes : tuple of int, default=(64,)
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
        Adam's rate. On Omniglot images ``lr=3e-3`` trains faster: 30.3% error
        on Lake-style 20-way one-shot runs after a default-length fit (45 s of
        one CPU thread) against 33.0% at 1e-3 (42 s; 35.7% in 58 s with the
        former five-way, 100-episode epochs); on small tabular data 1e-3
        generalises better to new classes (see the benchmarks page).
    max_epochs : int, default=10
    batch_size : int, default=1
        Episodes per optimiser step.
    callbacks, train_split, device, random_state, verbose, net_params
        See :class:`~sktransfer.base.NeuralEstimatorMixin`.
    tta : {None, "shift"}, default=None
        Test-time augmentation for images: with ``"shift"`` every image's
        embedding at adapt and predict time (not in meta-training) is the mean
        of its embeddings over its 9 one-pixel shifts (-1, 0, +1 in each axis,
        zero padded), 9 times the cost of an embedding; ``None`` embeds each
        image once. Needs 4-D X.

    augment : {None, "shift"} or callable, default=None
        Training-time augmentation of the images of meta-training episodes
        (support and query); ``"shift"`` is :class:`~sktransfer.meta.RandomShift`
        ``()``, a callable maps a tensor (n, C, H, W) to one of the same shape.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        ``net_.module_.trunk`` is the embedding network; ``net_.history`` has
        ``train_loss`` and ``train_acc`` (query accuracy).
    classes_ : ndarray
    n_way_, n_query_ : int
    adapted_state_ : dict
        The prototypes ``predict`` uses.
    n_features_in_ : int
    input_shape_ : tuple

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.meta import PrototypicalClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> proto = PrototypicalClassifier(max_epochs=3, random_state=0).fit(X[y < 5], y[y < 5])
    >>> new = proto.adapt(X[y >= 5][:50], y[y >= 5][:50])      # 5 new classes
    >>> new.score(X[y >= 5][50:], y[y >= 5][50:]) > 0.6
    True
    """

    def __init__(
        self,
        n_way=None,
        k_shot=1,
        n_query=None,
        episodes_per_epoch=None,
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
        tta=None,
        augment=None,
    ):
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
        self.tta = tta
        self.augment = augment

    _default_way = 20

    def _metric_module(self, trunk, sample_shape):
        return ProtoModule(trunk)
