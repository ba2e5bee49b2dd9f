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

    Parameters
    ----------
    trunk : nn.Module
        Maps X to a (n, d) representation.
    n_features : int
        ``d``, the trunk's output width.
    n_tasks : int
        Number of tasks.
    n_outputs : int
        Width of every head (the largest number of classes over tasks).
    task_covariance_penalty : float, default=0.0
        Weight of the task-relationship penalty on the heads (see
        :class:`HardSharingNet`).
    """


@deprecated("it was renamed TaskConditionedNet in 0.2 and will be removed in 0.3")
class TaskConditioned(TaskConditionedNet):
    """Deprecated name of :class:`TaskConditionedNet`.

    .. deprecated:: 0.2
       ``TaskConditioned`` was renamed :class:`TaskConditionedNet` (the
       network; :class:`TaskConditioning` is the ``architecture=`` object
       that builds it) and will be removed in 0.3.

    Parameters
    ----------
    blocks : list of nn.Module
        The trunk's blocks, built to accept the widened inputs that
        concatenation produces.
    positions : set of int
        Where the task enters: 0 is the input, ``l`` the output of block ``l``.
    how : {"concat", "film"}
        A one-hot task vector concatenated, or a learned per-task scale and
        shift (FiLM).
    shapes : list of tuple
        Shape of the features at every position ``0 .. L`` (before widening).
    n_tasks : int
        Number of tasks.
    n_outputs : int
        Width of the output layer.
    """
