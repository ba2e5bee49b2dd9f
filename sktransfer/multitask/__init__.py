"""Multi-task learning: several tasks learned by one network.

See :class:`MultiTaskClassifier` and the weighting strategies.
"""

from ._architectures import (
    ARCHITECTURES,
    MTAN,
    Architecture,
    CrossStitch,
    HardParameterSharing,
    HardSharing,
    Independent,
    MMoE,
    Sluice,
    TaskConditioned,
    TaskConditioning,
)
from ._classifier import MultiTaskClassifier
from ._gradient_weighting import (
    AlignedMTLWeighting,
    CAGradWeighting,
    IMTLWeighting,
    MGDAUBWeighting,
    MGDAWeighting,
    NashMTLWeighting,
    PCGradWeighting,
    UPGradWeighting,
)
from ._loss_weighting import DWAWeighting, FAMOWeighting, GradNormWeighting, RLWWeighting
from ._regressor import MultiTaskRegressor
from ._weighting import (
    WEIGHTINGS,
    EqualWeighting,
    StaticWeighting,
    UncertaintyWeighting,
    Weighting,
)

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "CrossStitch",
    "HardParameterSharing",
    "Independent",
    "MMoE",
    "MTAN",
    "Sluice",
    "TaskConditioning",
    "WEIGHTINGS",
    "EqualWeighting",
    "HardSharing",
    "MultiTaskClassifier",
    "MultiTaskRegressor",
    "StaticWeighting",
    "TaskConditioned",
    "UncertaintyWeighting",
    "Weighting",
    "AlignedMTLWeighting",
    "CAGradWeighting",
    "DWAWeighting",
    "FAMOWeighting",
    "GradNormWeighting",
    "IMTLWeighting",
    "MGDAUBWeighting",
    "MGDAWeighting",
    "NashMTLWeighting",
    "PCGradWeighting",
    "RLWWeighting",
    "UPGradWeighting",
]
