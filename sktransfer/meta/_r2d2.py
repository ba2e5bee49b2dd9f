"""R2D2Classifier: a differentiable closed-form ridge-regression head (Bertinetto et al., 2019)."""

import math
from numbers import Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import Interval
from torch import nn

from ..base import parameter_constraints
from ._augmentation import AUGMENT_CONSTRAINT
from ._base import META_PARAMETER_CONSTRAINTS
from ._metric_learner import TTA_CONSTRAINT, MetricFewShotClassifier, MetricModule

__all__ = ["R2D2Classifier", "ridge_weights"]


def ridge_weights(fs, ys, n_classes, lam):
    """The ridge-regression weights from support embeddings to one-hot targets,
    in the Woodbury form (an n_support x n_support system):

    .. math:: W = X^\\top (X X^\\top + \\lambda I)^{-1} Y,

    which equals :math:`(X^\\top X + \\lambda I)^{-1} X^\\top Y`, shape (d, n_classes).
    """
    Y = F.one_hot(ys, n_classes).to(fs.dtype)
    gram = fs @ fs.T
    eye = torch.eye(gram.shape[0], dtype=fs.dtype, device=fs.device)
    return fs.T @ torch.linalg.solve(gram + lam.to(fs.dtype) * eye, Y)


class R2D2Module(MetricModule):
    """Ridge regression on the support embeddings; logits ``scale * X W + bias``.

    ``log_lambda``, ``log_scale`` and ``bias`` are meta-learned with the
    trunk (the regulariser stays positive through its logarithm).
    """

    def __init__(self, trunk, ridge_lambda=1.0, scale=1.0):
        super().__init__(trunk)
        self.log_lambda = nn.Parameter(torch.tensor(math.log(ridge_lambda)))
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
        self.bias = nn.Parameter(torch.tensor(0.0))

    def support_state(self, fs, ys, n_classes):
        return {"n_classes": n_classes,
                "weights": ridge_weights(fs, ys, n_classes, self.log_lambda.exp())}

    def query_logits(self, state, fq):
        W = state["weights"]
        return self.log_scale.exp() * (fq.to(W.dtype) @ W) + self.bias


@parameter_constraints(**META_PARAMETER_CONSTRAINTS, augment=AUGMENT_CONSTRAINT, tta=TTA_CONSTRAINT,
                       ridge_lambda=[Interval(Real, 0, np.inf, closed="neither")],
                       scale=[Interval(Real, 0, np.inf, closed="neither")])
class R2D2Classifier(MetricFewShotClassifier):
    """R2-D2: a closed-form ridge-regression head, meta-trained end to end
    (Bertinetto et al., 2019, "Meta-learning with differentiable closed-form solvers").

    In every episode the support embeddings :math:`X` (n x d) are regressed
    onto their one-hot labels :math:`Y` by ridge regression, solved in closed
    form through the Woodbury identity (an n x n system, small in few-shot
    learning):

    .. math:: W = X^\\top (X X^\\top + \\lambda I)^{-1} Y,

    and a query embedding :math:`x` gets the logits :math:`\\alpha\\, x W +
    \\beta`. The solve is differentiable, so ``fit`` trains the embedding
    network, :math:`\\lambda`, the scale :math:`\\alpha` and the bias
    :math:`\\beta` on the query cross-entropy of N-way K-shot episodes (the
    episodic skeleton of :class:`~sktransfer.meta.PrototypicalClassifier`).
    :meth:`adapt` solves the ridge regression on a support set of any number
    of classes (no gradient step); after ``fit``, ``predict`` uses the
    weights from up to 20 training rows per class (at most about 1000 rows).

    Parameters
    ----------
    ridge_lambda : float, default=1.0
        Initial :math:`\\lambda` (meta-learned, kept positive).
    scale : float, default=1.0
        Initial output scale :math:`\\alpha` (meta-learned, kept positive).
    n_way : int or None, default=None
        Classes per training episode; ``None`` uses ``min(5, n)`` where ``n``
        counts the classes with more than ``k_shot`` examples.
    k_shot : int, default=1
    n_query : int or None, default=None
        Query examples per class; ``None`` uses up to 5.
    episodes_per_epoch : int, default=100
    module : None, nn.Module class, factory or instance, default=None
        The embedding network: an MLP with ``hidden_layer_sizes`` for 2-D X,
        :class:`~sktransfer.modules.Conv4` for images.
    hidden_layer_sizes : tuple of int, default=(64,)
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
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
        ``net_.module_.trunk`` is the embedding network;
        ``net_.module_.log_lambda``, ``log_scale`` and ``bias`` the learned
        head parameters; ``net_.history`` has ``train_loss`` and ``train_acc``.
    classes_ : ndarray
    n_way_, n_query_ : int
    adapted_state_ : dict
        The ridge weights ``predict`` uses.
    n_features_in_ : int
    input_shape_ : tuple

    Notes
    -----
    The paper's embedding concatenates the outputs of the last two blocks
    of its network for a higher-dimensional regression; here the regression
    reads the trunk's output as it is.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.meta import R2D2Classifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> r2d2 = R2D2Classifier(max_epochs=3, random_state=0).fit(X[y < 5], y[y < 5])
    >>> new = r2d2.adapt(X[y >= 5][:50], y[y >= 5][:50])      # 5 new classes
    >>> new.score(X[y >= 5][50:], y[y >= 5][50:]) > 0.6
    True
    """

    def __init__(
        self,
        ridge_lambda=1.0,
        scale=1.0,
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
        tta=None,
        augment=None,
    ):
        self.ridge_lambda = ridge_lambda
        self.scale = scale
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

    def _metric_module(self, trunk, sample_shape):
        return R2D2Module(trunk, float(self.ridge_lambda), float(self.scale))
