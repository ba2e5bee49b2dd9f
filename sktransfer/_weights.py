"""Sample and class weights: validation, the weight of each row, the weighted loss.

Every supervised estimator takes ``sample_weight`` in ``fit`` and
``partial_fit``, and every classifier a ``class_weight`` hyperparameter
(``None``, ``"balanced"`` or a dict from label to weight), as in
scikit-learn. Row ``i`` then weighs ``sample_weight[i] * class_weight[y[i]]``
and the loss of a mini-batch is the weighted mean of its rows' losses,
``sum(w_i * l_i) / sum(w_i)``, as in scikit-learn's ``MLPClassifier``:
multiplying every weight by one constant changes nothing, an integer weight
``k`` counts a row as ``k`` copies of it in the same batch, and a weight of 0
removes the row from the loss.

The weights travel with their rows as the entry :data:`SAMPLE_WEIGHT` of the
batch dict, through shuffling, validation splits (the validation loss is
weighted too) and replay memories; the nets' ``infer``
(:class:`WeightedBatchMixin`) takes the entry out before the module's
forward pass. Uniform weights are dropped when they are validated, so a fit
with ``sample_weight=np.ones(n)`` is the unweighted fit, bit for bit.
"""

from collections.abc import Mapping
from numbers import Number

import numpy as np
import torch
from sklearn.utils import check_array
from sklearn.utils._param_validation import StrOptions

__all__ = ["CLASS_WEIGHT_CONSTRAINT", "SAMPLE_WEIGHT", "WeightedBatchMixin",
           "WeightedLossMixin", "batch_sample_weight", "check_sample_weight",
           "class_weight_table", "combine_weights", "weighted_mean", "without_weights"]

#: The key of the per-row weights in a batch dict.
SAMPLE_WEIGHT = "sample_weight"

#: ``_parameter_constraints`` entry of ``class_weight``.
CLASS_WEIGHT_CONSTRAINT = [StrOptions({"balanced"}), dict, None]

_PARTIAL_BALANCED = (
    "class_weight='balanced' is not supported by partial_fit, which sees one batch of the "
    "data at a time: compute the weights once from (a large sample of) the whole target, "
    "sklearn.utils.class_weight.compute_class_weight('balanced', classes=classes, y=y), "
    "and pass them as a dict, class_weight=dict(zip(classes, weights))")


def check_sample_weight(sample_weight, n_samples):
    """``sample_weight`` as a float32 array of ``n_samples`` entries, or None.

    A scalar is one weight for every row. Negative, non-finite or all-zero
    weights, and a length other than ``n_samples``, are a ``ValueError``.
    Uniform weights (all equal) return None: they do not change the loss.
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, Number):
        sample_weight = np.full(n_samples, sample_weight)
    w = check_array(sample_weight, ensure_2d=False, dtype=np.float64,
                    input_name="sample_weight", ensure_min_samples=0)
    if w.ndim != 1:
        raise ValueError(f"sample_weight must be 1-D (one weight per sample), got an array "
                         f"of shape {w.shape}")
    if w.shape[0] != n_samples:
        raise ValueError(f"sample_weight has {w.shape[0]} entries but X has {n_samples} "
                         f"samples; pass one weight per sample")
    if (w < 0).any():
        raise ValueError("sample_weight has negative values; weights must be >= 0")
    if not w.any():
        raise ValueError("Sample weights must contain at least one non-zero number: "
                         "every weight of sample_weight is zero")
    if n_samples and (w == w[0]).all():
        return None
    return w.astype(np.float32)


def class_weight_table(class_weight, y_index, labels, partial=False, what="class_weight"):
    """The weight of each class index (``labels[k]`` has weight ``out[k]``), or None.

    ``class_weight`` is None, ``"balanced"`` (``n_samples / (n_classes *
    count)`` over the classes present in ``y_index``, as scikit-learn's
    ``compute_class_weight``) or a dict from label to weight (labels not in
    it weigh 1). ``y_index`` holds the rows' class indices (negative:
    missing); ``partial`` marks a ``partial_fit`` call, which cannot balance.
    """
    if class_weight is None:
        return None
    labels = np.asarray(labels)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"{what} must be 'balanced', a dict or None, got {class_weight!r}")
        if partial:
            raise ValueError(_PARTIAL_BALANCED)
        y_index = np.asarray(y_index)
        y_index = y_index[y_index >= 0].astype(np.int64)
        counts = np.bincount(y_index, minlength=len(labels)).astype(np.float64)
        present = counts > 0
        table = np.ones(len(labels))
        table[present] = y_index.shape[0] / (present.sum() * counts[present])
        return table.astype(np.float32)
    if not isinstance(class_weight, Mapping):
        raise TypeError(f"{what} must be 'balanced', a dict from label to weight or None, "
                        f"got {type(class_weight).__name__}")
    table = np.ones(len(labels))
    known = {_plain(label): k for k, label in enumerate(labels.tolist())}
    unknown = [key for key in class_weight if _plain(key) not in known]
    if unknown:
        raise ValueError(f"{what} has labels {unknown[:10]} that are not classes of the "
                         f"target; the classes are {labels.tolist()[:20]}")
    for key, value in class_weight.items():
        if not np.isscalar(value) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{what}[{key!r}] must be a finite number >= 0, got {value!r}")
        table[known[_plain(key)]] = float(value)
    return table.astype(np.float32)


def _plain(label):
    """A label as a hashable Python value (NumPy scalars compare as their values)."""
    return label.item() if isinstance(label, np.generic) else label


def combine_weights(sample_weight, class_weights):
    """The rows' weights: ``sample_weight`` times the rows' class weights, or None.

    Either may be None; all-zero rows after the product are a ``ValueError``
    (the class weights removed every row).
    """
    if class_weights is None:
        return sample_weight
    w = class_weights if sample_weight is None else (
        np.asarray(sample_weight).reshape((-1,) + (1,) * (np.ndim(class_weights) - 1))
        * class_weights)
    if not np.any(w):
        raise ValueError("every row has weight zero after class_weight is applied: no row "
                         "would count in the loss")
    return np.ascontiguousarray(w, dtype=np.float32)


def weighted_mean(losses, weight):
    """``sum(w_i * l_i) / sum(w_i)`` over the rows (a row's own terms averaged first).

    ``losses`` is (n, ...) of unreduced losses, ``weight`` (n,); a batch whose
    weights are all zero has loss 0.
    """
    if losses.dim() > 1:
        losses = losses.reshape(losses.shape[0], -1).mean(1)
    weight = weight.to(device=losses.device, dtype=losses.dtype)
    return (losses * weight).sum() / weight.sum().clamp(min=torch.finfo(losses.dtype).tiny)


def batch_sample_weight(X):
    """The per-row weights of a batch, or None."""
    return X.get(SAMPLE_WEIGHT) if isinstance(X, Mapping) else None


def without_weights(x):
    """A batch without its weights: the dict without the entry (its ``"X"`` alone if
    nothing else is left, for modules whose forward takes one tensor)."""
    if type(x) is not dict and not isinstance(x, Mapping) or SAMPLE_WEIGHT not in x:
        return x
    rest = {k: v for k, v in x.items() if k != SAMPLE_WEIGHT}
    return rest["X"] if rest.keys() == {"X"} else rest


class WeightedBatchMixin:
    """A skorch net mixin: batches may carry per-row weights (see the module docstring).

    ``infer`` takes the weights out of the batch before the forward pass; the
    net's ``get_loss`` reads them from its ``X`` argument (the whole batch).
    """

    def infer(self, x, **fit_params):
        return super().infer(without_weights(x), **fit_params)


class WeightedLossMixin(WeightedBatchMixin):
    """:class:`WeightedBatchMixin` with skorch's ``get_loss`` made a weighted mean.

    For nets with an ordinary criterion (``CrossEntropyLoss``, ``MSELoss``,
    or any loss with a ``reduction``): a weighted batch is reduced by
    :func:`weighted_mean`, an unweighted one exactly as skorch does.
    """

    def get_loss(self, y_pred, y_true, X=None, training=False):
        weight = batch_sample_weight(X)
        if weight is None:
            return super().get_loss(y_pred, y_true, X=X, training=training)
        criterion = self.criterion_
        reduction = getattr(criterion, "reduction", None)
        if reduction is None:
            raise TypeError(f"sample weights need a criterion with a `reduction` attribute "
                            f"(a torch loss); {type(criterion).__name__} has none")
        criterion.reduction = "none"
        try:
            losses = criterion(y_pred, y_true.to(y_pred.device))
        finally:
            criterion.reduction = reduction
        return weighted_mean(losses, weight)
