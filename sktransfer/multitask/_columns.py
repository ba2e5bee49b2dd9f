"""The old module of the column networks, kept so that models pickled by sktransfer 0.1 load.

:class:`ColumnNet` (independent, cross-stitch and sluice networks) now lives
in :mod:`._soft_sharing` and :class:`TaskHeads` in :mod:`._heads`; nothing in
the package imports this module. It goes in 0.3.
"""

from ._heads import TaskHeads
from ._soft_sharing import ColumnNet

__all__ = ["ColumnNet", "TaskHeads"]
