"""Public names renamed in 0.2: they still work, with a ``FutureWarning``, until 0.3.

Each is a thin subclass of the new class, so ``isinstance`` checks against
the new name hold for it. Models pickled by 0.1 do not go through these
names (their classes resolve to the new ones at the old module paths), so
loading them does not warn.
"""

from sklearn.utils import deprecated

from ._conditioned import TaskConditionedNet
from ._hard import HardSharingNet

__all__ = ["HardSharing", "TaskConditioned"]


@deprecated("it was renamed HardSharingNet in 0.2 and will be removed in 0.3")
class HardSharing(HardSharingNet):
    """Deprecated name of :class:`HardSharingNet`.

    .. deprecated:: 0.2
       ``HardSharing`` was renamed :class:`HardSharingNet` (the network;
       :class:`HardParameterSharing` is the ``architecture=`` object that
       builds it) and will be removed in 0.3.
    """


@deprecated("it was renamed TaskConditionedNet in 0.2 and will be removed in 0.3")
class TaskConditioned(TaskConditionedNet):
    """Deprecated name of :class:`TaskConditionedNet`.

    .. deprecated:: 0.2
       ``TaskConditioned`` was renamed :class:`TaskConditionedNet` (the
       network; :class:`TaskConditioning` is the ``architecture=`` object
       that builds it) and will be removed in 0.3.
    """
