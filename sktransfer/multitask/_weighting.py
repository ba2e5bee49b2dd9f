"""The old module of the weighting strategies, kept so that models pickled by sktransfer 0.1 load.

Nothing in the package imports it; it goes in 0.3. The protocol classes now
live in :mod:`._weighting_base`, the loss-based strategies (equal, static
and uncertainty weighting among them) in :mod:`._loss_weighting`, and the
registry (``WEIGHTINGS``, ``get_weighting``) in :mod:`._registry`.
"""

from ._loss_weighting import (
    EqualWeighting,
    StaticWeighting,
    UncertaintyWeighting,
    _StaticWeighter,
    _UncertaintyWeighter,
)
from ._registry import WEIGHTINGS, get_weighting
from ._weighting_base import Weighting

__all__ = [
    "Weighting",
    "EqualWeighting",
    "StaticWeighting",
    "UncertaintyWeighting",
    "WEIGHTINGS",
    "get_weighting",
    "_StaticWeighter",
    "_UncertaintyWeighter",
]
