"""Multi-task learning: several tasks learned by one network.

See :class:`MultiTaskClassifier` and the weighting strategies.
"""

from ._architectures import (
    MTAN,
    Architecture,
    CrossStitch,
    HardParameterSharing,
    Independent,
    MMoE,
    Sluice,
    TaskConditioning,
)
from ._classifier import MultiTaskClassifier
from ._conditioned import TaskConditionedNet
from ._deprecated import HardSharing, TaskConditioned
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
from ._hard import HardSharingNet
from ._loss_weighting import (
    DWAWeighting,
    EqualWeighting,
    FAMOWeighting,
    GradNormWeighting,
    RLWWeighting,
    StaticWeighting,
    UncertaintyWeighting,
)
from ._registry import ARCHITECTURES, WEIGHTINGS
from ._regressor import MultiTaskRegressor
from ._weighting_base import BackwardWeighter, GradientWeighter, Weighter, Weighting

__all__ = [
    "MultiTaskClassifier",
    "MultiTaskRegressor",
    # architectures: the registry, the configuration objects, the networks
    "ARCHITECTURES",
    "Architecture",
    "HardParameterSharing",
    "Independent",
    "TaskConditioning",
    "CrossStitch",
    "Sluice",
    "MTAN",
    "MMoE",
    "HardSharingNet",
    "TaskConditionedNet",
    # weightings: the registry, the protocol, the strategies
    "WEIGHTINGS",
    "Weighting",
    "Weighter",
    "GradientWeighter",
    "BackwardWeighter",
    "EqualWeighting",
    "StaticWeighting",
    "UncertaintyWeighting",
    "DWAWeighting",
    "RLWWeighting",
    "FAMOWeighting",
    "GradNormWeighting",
    "MGDAWeighting",
    "MGDAUBWeighting",
    "PCGradWeighting",
    "CAGradWeighting",
    "IMTLWeighting",
    "UPGradWeighting",
    "AlignedMTLWeighting",
    "NashMTLWeighting",
    # deprecated names (FutureWarning), removed in 0.3
    "HardSharing",
    "TaskConditioned",
]
