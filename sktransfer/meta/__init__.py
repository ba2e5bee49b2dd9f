"""Meta-learning and few-shot classification: MAML and the few-shot family.

Every estimator meta-trains with ``fit(X, y, groups=None)`` on N-way K-shot
episodes drawn from the classes of ``y`` and adapts to a new task with
``adapt(X_support, y_support)``, which returns a new fitted estimator.

Where things are: one file per estimator (``_maml_classifier.py``,
``_maml_regressor.py``, ``_reptile.py``, ``_protonet.py``, ``_matching.py``,
``_relation.py``, ``_blackbox.py``, ``_baseline.py``, ``_simpleshot.py``,
``_r2d2.py``, ``_sur.py``); Baseline's adaptation strategies (fine-tuning,
transductive fine-tuning, TIM) in ``_adaptation.py``; the gradient-based
pieces in ``_inner_loop.py`` (the one inner loop), ``_inner_update.py``
(inner-update strategies), ``_augmentation.py`` (training-time image
augmentation), ``_task_batching.py`` (vmap / loop / compiled
runners) and ``_maml_module.py`` (MAML's meta-model); the metric learners'
shared template in ``_metric_learner.py``; episodic training in ``_base.py``
and ``_episodes.py``.
"""

from ._adaptation import TIM, Adaptation, TransductiveFineTuning
from ._augmentation import RandomShift
from ._baseline import BaselineFewShotClassifier
from ._blackbox import BlackBoxMetaClassifier
from ._episodes import Episode, EpisodeSampler, sample_episode
from ._inner_loop import inner_loop
from ._inner_update import InnerUpdate, MetaLSTMUpdate, MetaSGDUpdate, SGDUpdate
from ._maml_classifier import MAMLClassifier
from ._maml_regressor import MAMLRegressor
from ._matching import MatchingClassifier
from ._protonet import PrototypicalClassifier
from ._r2d2 import R2D2Classifier
from ._relation import RelationClassifier
from ._reptile import ReptileClassifier
from ._simpleshot import SimpleShotClassifier
from ._sur import SURClassifier
from ._task_batching import choose_task_batching

__all__ = [
    "Adaptation",
    "BaselineFewShotClassifier",
    "BlackBoxMetaClassifier",
    "Episode",
    "EpisodeSampler",
    "InnerUpdate",
    "MAMLClassifier",
    "MAMLRegressor",
    "MatchingClassifier",
    "MetaLSTMUpdate",
    "MetaSGDUpdate",
    "PrototypicalClassifier",
    "R2D2Classifier",
    "RandomShift",
    "RelationClassifier",
    "ReptileClassifier",
    "SGDUpdate",
    "SURClassifier",
    "SimpleShotClassifier",
    "TIM",
    "TransductiveFineTuning",
    "choose_task_batching",
    "inner_loop",
    "sample_episode",
]
