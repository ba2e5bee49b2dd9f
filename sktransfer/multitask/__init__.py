"""Multi-task learning: several tasks learned by one network.

See :class:`MultiTaskClassifier` and the weighting strategies.
"""

from ._architectures import ARCHITECTURES, HardSharing, TaskConditioned
from ._classifier import MultiTaskClassifier
from ._weighting import (
    WEIGHTINGS,
    EqualWeighting,
    StaticWeighting,
    UncertaintyWeighting,
    Weighting,
)

__all__ = [
    "ARCHITECTURES",
    "WEIGHTINGS",
    "EqualWeighting",
    "HardSharing",
    "MultiTaskClassifier",
    "StaticWeighting",
    "TaskConditioned",
    "UncertaintyWeighting",
    "Weighting",
]
