"""Continual learning: learn tasks one after another without forgetting the old ones.

Estimators: :class:`ContinualClassifier` (any strategy, or several
combined), :class:`EWCContinualClassifier` (elastic weight consolidation,
optionally with replay) and :class:`ProgressiveNetworkClassifier` (a new
column per task). Strategies: :class:`Naive`, :class:`JointTraining`,
:class:`EWC` (and online EWC), :class:`SynapticIntelligence`, :class:`MAS`,
:class:`LwF`, :class:`Replay`, :class:`AGEM`, :class:`GEM`, :class:`DER`,
:class:`DERPlusPlus`, :class:`ERACE`, :class:`GDumb`, :class:`ICaRL`; a new
strategy is a :class:`Strategy` whose ``build`` returns a :class:`Plugin` (its hooks) and trains on
:class:`Task` objects. The metrics computed from the accuracy
matrix are in :mod:`sktransfer.metrics`, the task sequences in
:mod:`sktransfer.datasets`.
"""

from ._agem import AGEM
from ._base import SCENARIOS
from ._classifier import STRATEGIES, ContinualClassifier
from ._der import DER, DERPlusPlus
from ._er_ace import ERACE
from ._ewc import EWC, EWCContinualClassifier
from ._fisher import FISHER_KINDS, fisher_diagonal
from ._gdumb import GDumb
from ._gem import GEM, gem_projection
from ._icarl import ICaRL, herding_selection
from ._lwf import LwF
from ._mas import MAS, mas_importance
from ._progressive import ProgressiveNetworkClassifier
from ._replay import Replay, ReservoirBuffer
from ._scenario_warning import warn_unsuited_scenario
from ._si import SynapticIntelligence
from ._strategies import JointTraining, Naive, Plugin, Strategy, Task

__all__ = [
    "AGEM",
    "DER",
    "DERPlusPlus",
    "ERACE",
    "EWC",
    "FISHER_KINDS",
    "SCENARIOS",
    "STRATEGIES",
    "ContinualClassifier",
    "EWCContinualClassifier",
    "GDumb",
    "GEM",
    "ICaRL",
    "JointTraining",
    "LwF",
    "MAS",
    "Naive",
    "Plugin",
    "ProgressiveNetworkClassifier",
    "Replay",
    "ReservoirBuffer",
    "Strategy",
    "SynapticIntelligence",
    "Task",
    "fisher_diagonal",
    "gem_projection",
    "herding_selection",
    "mas_importance",
    "warn_unsuited_scenario",
]
