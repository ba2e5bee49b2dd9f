"""sktransfer: multi-task, transfer, meta- and continual learning for scikit-learn.

Every estimator is a scikit-learn estimator that trains a PyTorch network
through a private skorch net. Importing the package never changes
scikit-learn's global configuration.
"""

from .continual import ContinualClassifier, EWCContinualClassifier, ProgressiveNetworkClassifier
from .meta import (
    BaselineFewShotClassifier,
    BlackBoxMetaClassifier,
    MAMLClassifier,
    MAMLRegressor,
    MatchingClassifier,
    PrototypicalClassifier,
    R2D2Classifier,
    RelationClassifier,
    ReptileClassifier,
    SimpleShotClassifier,
    SURClassifier,
)
from .multitask import MultiTaskClassifier, MultiTaskRegressor, TaskGroupedClassifier
from .transfer import FineTuner, FineTunerRegressor, PretrainedFeatures

__version__ = "0.1.0"

__all__ = ["MultiTaskClassifier", "MultiTaskRegressor", "TaskGroupedClassifier", "__version__"]
__all__ += ["ContinualClassifier", "EWCContinualClassifier", "ProgressiveNetworkClassifier"]
__all__ += ["FineTuner", "FineTunerRegressor", "PretrainedFeatures"]
__all__ += ["BaselineFewShotClassifier", "BlackBoxMetaClassifier", "MAMLClassifier"]
__all__ += ["MAMLRegressor", "MatchingClassifier", "PrototypicalClassifier"]
__all__ += ["R2D2Classifier", "RelationClassifier", "ReptileClassifier"]
__all__ += ["SimpleShotClassifier", "SURClassifier"]
