"""Transfer learning: adapt a pretrained network to a new task.

* :class:`FineTuner` / :class:`FineTunerRegressor`: fine-tune a pretrained
  network (last layer, top layers, everything, gradual unfreezing, or linear
  probe then fine-tune), with discriminative learning rates, an L2-SP penalty,
  pretrained batch-norm statistics kept frozen (untrained ones train), and
  defaults that work on a few examples per class.
* strategies (``strategy=``): :class:`LastLayer`, :class:`TopLayers`,
  :class:`FullFineTuning`, :class:`GradualUnfreezing`, :class:`LPFT`,
  :class:`LoRA` (low-rank adapters, merged after training), :class:`BitFit`
  (biases only), on the base :class:`TransferStrategy` (:data:`STRATEGIES`
  maps their names);
* feature regularisers (``regularizer=``), next to the L2-SP penalty:
  :class:`BSS` (batch spectral shrinkage) and :class:`DELTA` (feature maps
  with channel attention), on the base :class:`TransferRegularizer`;
* :class:`PretrainedFeatures`: the frozen network as a transformer, for the
  linear-probe baseline ``make_pipeline(PretrainedFeatures(net), LogisticRegression())``.
* transferability scores, to choose a source before fine-tuning:
  :func:`logme_score`, :func:`leep_score`, :func:`h_score`,
  :func:`rank_pretrained` (every candidate, or every layer, as a table) and
  :func:`make_transferability_scorer` (``logme_scorer``, ``leep_scorer``,
  ``h_scorer``) for ``GridSearchCV(FineTuner(...), {"pretrained": [...]})``.
"""

from ._features import PretrainedFeatures
from ._finetuner import FineTuner, FineTunerRegressor
from ._regularizers import BSS, DELTA, TransferRegularizer
from ._strategies import (
    LPFT,
    STRATEGIES,
    BitFit,
    FullFineTuning,
    GradualUnfreezing,
    LastLayer,
    LoRA,
    TopLayers,
    TransferStrategy,
)
from ._transferability import (
    h_score,
    h_scorer,
    leep_score,
    leep_scorer,
    logme_score,
    logme_scorer,
    make_transferability_scorer,
    rank_pretrained,
)

__all__ = [
    "BSS", "DELTA", "LPFT", "STRATEGIES", "BitFit", "LoRA", "TransferRegularizer",
    "FineTuner", "FineTunerRegressor", "FullFineTuning", "GradualUnfreezing", "LastLayer",
    "PretrainedFeatures", "TopLayers", "TransferStrategy", "h_score", "h_scorer",
    "leep_score", "leep_scorer", "logme_score", "logme_scorer",
    "make_transferability_scorer", "rank_pretrained",
]
