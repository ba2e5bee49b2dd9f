"""Meta-learning and few-shot classification: MAML and the few-shot family.

Every estimator meta-trains with ``fit(X, y, groups=None)`` on N-way K-shot
episodes drawn from the classes of ``y`` and adapts to a new task with
``adapt(X_support, y_support)``, which returns a new fitted estimator.
"""

from ._baseline import BaselineFewShotClassifier
from ._blackbox import BlackBoxMetaClassifier
from ._episodes import Episode, EpisodeSampler, sample_episode
from ._inner_loop import MetaLSTMUpdate, inner_loop
from ._maml import MAMLClassifier
from ._maml_module import choose_task_batching
from ._maml_regressor import MAMLRegressor
from ._matching import MatchingClassifier
from ._protonet import PrototypicalClassifier
from ._relation import RelationClassifier
from ._reptile import ReptileClassifier

__all__ = [
    "BaselineFewShotClassifier",
    "BlackBoxMetaClassifier",
    "Episode",
    "EpisodeSampler",
    "MAMLClassifier",
    "MAMLRegressor",
    "MatchingClassifier",
    "MetaLSTMUpdate",
    "PrototypicalClassifier",
    "RelationClassifier",
    "ReptileClassifier",
    "choose_task_batching",
    "inner_loop",
    "sample_episode",
]
