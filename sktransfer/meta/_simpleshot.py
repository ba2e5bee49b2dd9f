"""SimpleShotClassifier: nearest centroid on transformed features (Wang et al., 2019)."""

import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import StrOptions

from .._weights import CLASS_WEIGHT_CONSTRAINT, check_sample_weight
from ..base import parameter_constraints
from ._base import META_PARAMETER_CONSTRAINTS, embed_in_chunks, state_to
from ._baseline import BaselineFewShotClassifier, BaselineModule

__all__ = ["SimpleShotClassifier"]

NORMALIZATIONS = ("cl2n", "l2n", "none")


def transform_features(feats, mean, normalization):
    """SimpleShot's feature transform: ``"cl2n"`` subtracts ``mean`` (the mean
    base-class feature) and L2-normalises, ``"l2n"`` only L2-normalises,
    ``"none"`` leaves the features as they are."""
    if normalization == "cl2n":
        return F.normalize(feats - mean.to(feats.dtype), dim=1)
    if normalization == "l2n":
        return F.normalize(feats, dim=1)
    return feats


class SimpleShotModule(BaselineModule):
    """Baseline's trunk and training head, plus the mean base-class feature
    (a buffer set after training) and a nearest-centroid rule."""

    def __init__(self, trunk, width, n_classes, head):
        super().__init__(trunk, width, n_classes, head)
        self.register_buffer("feature_mean", torch.zeros(width))

    def centroid_state(self, feats, ys, n_classes, normalization, weights=None):
        z = transform_features(feats, self.feature_mean, normalization)
        one_hot = F.one_hot(ys, n_classes).to(z.dtype)
        if weights is not None:
            one_hot = one_hot * weights.to(z.dtype)[:, None]
        centroids = (one_hot.T @ z) / one_hot.sum(0).clamp_min(1e-12)[:, None]
        return {"centroids": centroids, "normalization": normalization}

    def adapt_state(self, Xs, ys, n_classes, normalization="cl2n"):
        with torch.no_grad():
            feats = self.embed_rows(Xs)
        return self.centroid_state(feats, ys, n_classes, normalization)

    def predict_logits(self, state, X):
        z = transform_features(self.embed_rows(X), self.feature_mean, state["normalization"])
        return -torch.cdist(z, state["centroids"].to(z.dtype)).pow(2)


@parameter_constraints(**META_PARAMETER_CONSTRAINTS, class_weight=CLASS_WEIGHT_CONSTRAINT,
                       normalization=[StrOptions(set(NORMALIZATIONS))])
class SimpleShotClassifier(BaselineFewShotClassifier):
    """SimpleShot: nearest centroid on centred, L2-normalised features (Wang et al., 2019).

    ``fit`` trains the trunk exactly as
    :class:`~sktransfer.meta.BaselineFewShotClassifier` does (a head over all
    classes of ``y``, plain cross-entropy, mini-batches, no episodes), then
    stores the mean embedding :math:`\\bar x` of the training rows. A row's
    feature is transformed (``normalization="cl2n"``, centring then L2
    normalisation):

    .. math:: \\hat x = \\frac{f(x) - \\bar x}{\\lVert f(x) - \\bar x \\rVert_2},

    and a query gets the class of the nearest centroid (the mean transformed
    feature of each class's support rows) in Euclidean distance; the logits
    are the negative squared distances. :meth:`adapt` only embeds the support
    set (no gradient step); after ``fit``, ``predict`` uses the centroids of
    the classes of ``fit`` over all their training rows.

    Parameters
    ----------
    normalization : {"cl2n", "l2n", "none"}, default="cl2n"
        ``"cl2n"``: subtract the mean base-class feature, then L2-normalise
        (the paper's CL2N); ``"l2n"``: L2-normalise only; ``"none"``: the raw
        features (nearest centroid, ProtoNet's rule on a Baseline trunk).
    head : {"linear", "cosine"}, default="linear"
        The head of the training (the paper's is linear, plain cross-entropy);
        it is not used for predictions.
    tta : {None, "shift"}, default=None
        Test-time augmentation: with ``"shift"`` the feature of every image
        that :meth:`adapt` averages into a centroid, and that ``predict``
        classifies, is the mean of its embeddings over the 9 one-pixel
        shifts of the image (9 forward passes per row). ``fit`` is unchanged:
        the mean base-class feature and the centroids of the classes of
        ``fit`` are of the unshifted images. Images only.
    class_weight, augment, module, hidden_layer_sizes, optimizer, lr, max_epochs, batch_size
        The training, as in :class:`~sktransfer.meta.BaselineFewShotClassifier`.
    callbacks, train_split, early_stopping, validation_fraction, n_iter_no_change, tol
        As in :class:`~sktransfer.meta.BaselineFewShotClassifier`.
    device, random_state, verbose, net_params
        See :class:`~sktransfer.base.NeuralEstimatorMixin`.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        ``net_.module_.trunk`` is the embedding network and
        ``net_.module_.feature_mean`` the mean base-class feature.
    feature_mean_ : ndarray of shape (d,)
        The mean embedding of the training rows (weighted by
        ``sample_weight`` when given), which ``"cl2n"`` subtracts.
    classes_ : ndarray
        Classes of ``fit``, or of the support set after :meth:`adapt`.
    adapted_state_ : dict
        The centroids ``predict`` uses.
    n_features_in_ : int
    input_shape_ : tuple

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.meta import SimpleShotClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> simple = SimpleShotClassifier(max_epochs=5, random_state=0).fit(X[y < 5], y[y < 5])
    >>> new = simple.adapt(X[y >= 5][:50], y[y >= 5][:50])
    >>> new.score(X[y >= 5][50:], y[y >= 5][50:]) > 0.6
    True
    """

    _module_class = SimpleShotModule

    def __init__(
        self,
        normalization="cl2n",
        head="linear",
        class_weight=None,
        augment=None,
        tta=None,
        module=None,
        hidden_layer_sizes=(64,),
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=10,
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
    ):
        self.normalization = normalization
        self.head = head
        self.class_weight = class_weight
        self.augment = augment
        self.tta = tta
        self.module = module
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

    def _adapt_options(self):
        return {"normalization": self.normalization}

    def adapt(self, X_support, y_support):
        """Classify by the centroids of a support set's transformed features.

        Parameters
        ----------
        X_support : array-like of shape (n_support, ...)
            The labelled examples of the new task.
        y_support : array-like of shape (n_support,)
            Their labels, any values; they become ``classes_`` of the result.

        Returns
        -------
        SimpleShotClassifier
            A new fitted estimator whose ``predict`` answers among the support
            set's classes. ``self`` is left unchanged.
        """
        return self._run("adapt", X_support, y_support)

    # --------------------------------------------------------- template hooks
    def _encode(self, ctx, X, y, groups=None, sample_weight=None):
        data = super()._encode(ctx, X, y, groups=groups, sample_weight=sample_weight)
        if ctx.name != "adapt":
            data["row_weights"] = check_sample_weight(sample_weight, data["X"].shape[0])
        return data

    def _train(self, ctx, net, data):
        if ctx.name == "adapt":
            return super()._train(ctx, net, data)
        super()._train(ctx, net, data)  # Baseline's training; its head is not kept
        module = net.module_
        device = str(net.device)
        w = data["row_weights"]
        w = None if w is None else torch.as_tensor(w, dtype=torch.float32, device=device)
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                feats = embed_in_chunks(module.embed, torch.as_tensor(data["X"]).to(device))
                if w is None:
                    mean = feats.mean(0)
                else:
                    mean = (w[:, None] * feats).sum(0) / w.sum()
                module.feature_mean.copy_(mean)
                ys = torch.as_tensor(data["y_enc"], dtype=torch.long, device=device)
                state = module.centroid_state(feats, ys, len(data["classes"]),
                                              self.normalization, weights=w)
        finally:
            module.train(was_training)
        return state_to(state, "cpu")

    def _record(self, ctx, net, data, state):
        result = super()._record(ctx, net, data, state)
        if ctx.name != "adapt":
            self.feature_mean_ = net.module_.feature_mean.detach().cpu().numpy().copy()
        return result
