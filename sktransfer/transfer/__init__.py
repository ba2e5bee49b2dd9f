"""Transfer learning: adapt a pretrained network to a new task.

* :class:`FineTuner` / :class:`FineTunerRegressor`: fine-tune a pretrained
  network (last layer, top layers, everything, gradual unfreezing, or linear
  probe then fine-tune), with discriminative learning rates, an L2-SP penalty,
  pretrained batch-norm statistics kept frozen (untrained ones train), and
  defaults that work on a few examples per class.
* :class:`PretrainedFeatures`: the frozen network as a transformer, for the
  linear-probe baseline ``make_pipeline(PretrainedFeatures(net), LogisticRegression())``.
"""

from ._features import PretrainedFeatures
from ._finetuner import FineTuner, FineTunerRegressor
from ._strategies import STRATEGIES

__all__ = ["STRATEGIES", "FineTuner", "FineTunerRegressor", "PretrainedFeatures"]
