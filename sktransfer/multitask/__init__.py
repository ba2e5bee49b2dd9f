"""Multi-task learning: several tasks learned by one network.

See :class:`MultiTaskClassifier` and the weighting strategies.
"""

from ._affinity import TaskAffinity, task_affinity
from ._architectures import (
    CGC,
    MTAN,
    PLE,
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
from ._gradient_balancing import DBMTLWeighting, ExcessMTLWeighting
from ._gradient_surgery import GradDropWeighting, GradVacWeighting
from ._gradient_weighting import (
    AlignedMTLWeighting,
    CAGradWeighting,
    FairGradWeighting,
    IMTLWeighting,
    MGDAUBWeighting,
    MGDAWeighting,
    NashMTLWeighting,
    PCGradWeighting,
    UPGradWeighting,
)
from ._grouping import group_tasks, grouping_score
from ._hard import HardSharingNet
from ._loss_weighting import (
    DWAWeighting,
    EqualWeighting,
    FAMOWeighting,
    GradNormWeighting,
    RLWWeighting,
    StaticWeighting,
    STCHWeighting,
    UncertaintyWeighting,
)
from ._registry import ARCHITECTURES, WEIGHTINGS
from ._regressor import MultiTaskRegressor
from ._task_grouped import TaskGroupedClassifier
from ._weighting_base import BackwardWeighter, GradientWeighter, Weighter, Weighting

__all__ = [
    "MultiTaskClassifier",
    "MultiTaskRegressor",
    # which tasks to train together: the affinity, the groups, the grouped estimator
    "TaskAffinity",
    "task_affinity",
    "group_tasks",
    "grouping_score",
    "TaskGroupedClassifier",
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
    "CGC",
    "PLE",
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
    "GradDropWeighting",
    "GradVacWeighting",
    "FairGradWeighting",
    "DBMTLWeighting",
    "STCHWeighting",
    "ExcessMTLWeighting",
    # deprecated names (FutureWarning), removed in 0.3
    "HardSharing",
    "TaskConditioned",
]
