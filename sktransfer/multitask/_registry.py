"""The names that ``weighting=`` and ``architecture=`` accept, and their resolution.

:data:`WEIGHTINGS` and :data:`ARCHITECTURES` map each name to the strategy
class that it builds with its defaults; :func:`get_weighting` and
:func:`build_architecture` turn the estimator's parameter (a name, a
strategy object, or for architectures a user ``nn.Module``) into what the
net is built from, validating the strategy's parameters first. A new
built-in strategy is one entry here; a user's strategy needs none, it is
passed as an object.
"""

from torch import nn

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
from ._loss_weighting import (
    DWAWeighting,
    EqualWeighting,
    FAMOWeighting,
    GradNormWeighting,
    RLWWeighting,
    StaticWeighting,
    STCHWeighting,
    UncertaintyWeighting,
    task_weights_array,
)
from ._weighting_base import Weighting

__all__ = ["WEIGHTINGS", "get_weighting", "ARCHITECTURES", "build_architecture"]


#: Weighting names accepted by ``weighting=`` and the strategy each builds.
WEIGHTINGS = {
    "equal": EqualWeighting,
    "static": StaticWeighting,
    "uncertainty": UncertaintyWeighting,
    "dwa": DWAWeighting,
    "rlw": RLWWeighting,
    "famo": FAMOWeighting,
    "gradnorm": GradNormWeighting,
    "mgda": MGDAWeighting,
    "mgda_ub": MGDAUBWeighting,
    "pcgrad": PCGradWeighting,
    "cagrad": CAGradWeighting,
    "imtl": IMTLWeighting,
    "upgrad": UPGradWeighting,
    "aligned_mtl": AlignedMTLWeighting,
    "nash_mtl": NashMTLWeighting,
    "graddrop": GradDropWeighting,
    "gradvac": GradVacWeighting,
    "fairgrad": FairGradWeighting,
    "db_mtl": DBMTLWeighting,
    "stch": STCHWeighting,
    "excess_mtl": ExcessMTLWeighting,
}


def get_weighting(weighting, task_weights=None, tasks=None):
    """Resolve ``weighting`` (a name or a :class:`Weighting`) to a strategy.

    ``task_weights`` are the static weights used by ``"static"``; with
    ``"equal"`` given explicit ``task_weights`` they are used as well (equal
    weighting scaled by fixed priors is static weighting).

    The strategy's parameters are validated against its
    ``_parameter_constraints``; a bad value raises
    ``sklearn.utils._param_validation.InvalidParameterError`` (a
    ``ValueError``) naming the parameter and the strategy.
    """
    if isinstance(weighting, Weighting):
        strategy = weighting
    elif isinstance(weighting, str) and weighting in WEIGHTINGS:
        strategy = WEIGHTINGS[weighting]()
    else:
        raise ValueError(
            f"unknown weighting {weighting!r}; valid names are {sorted(WEIGHTINGS)}, "
            "or pass a sktransfer.multitask.Weighting instance"
        )
    strategy._validate_params()
    if task_weights is not None:
        n = len(tasks)
        w = task_weights_array(task_weights, n, tasks)
        if isinstance(strategy, (EqualWeighting, StaticWeighting)):
            return StaticWeighting(w)
        raise ValueError(
            f"task_weights are static weights; they cannot be combined with "
            f"weighting={weighting!r}. Use weighting='static' (or 'equal')"
        )
    if isinstance(strategy, StaticWeighting) and strategy.weights is None:
        raise ValueError("weighting='static' needs task_weights=[w_1, ..., w_T]")
    if isinstance(strategy, StaticWeighting) and isinstance(strategy.weights, dict):
        return StaticWeighting(task_weights_array(strategy.weights, len(tasks), tasks))
    return strategy


#: Architecture names accepted by ``architecture=`` and the class each builds.
ARCHITECTURES = {
    "hard": HardParameterSharing,
    "independent": Independent,
    "conditioned": TaskConditioning,
    "cross_stitch": CrossStitch,
    "sluice": Sluice,
    "mtan": MTAN,
    "mmoe": MMoE,
    "cgc": CGC,
    "ple": PLE,
}


def build_architecture(architecture, make_trunk, X_example, n_tasks, n_outputs):
    """Build the network for ``architecture``.

    Parameters
    ----------
    architecture : str, Architecture or nn.Module
        A name of :data:`ARCHITECTURES`, an :class:`Architecture`, or a user
        module with the ``forward(X, task_ids=None)`` contract (used as is).
    make_trunk : callable
        ``make_trunk(n_input_features)`` returns a fresh trunk (``None``: for
        the original input shape).
    X_example : torch.Tensor
        A couple of input rows, to infer shapes.

    The architecture's parameters are validated against its
    ``_parameter_constraints`` first; a bad value raises
    ``sklearn.utils._param_validation.InvalidParameterError`` (a
    ``ValueError``) naming the parameter and the architecture.
    """
    if isinstance(architecture, nn.Module):
        return architecture
    if isinstance(architecture, str) and architecture in ARCHITECTURES:
        architecture = ARCHITECTURES[architecture]()
    if not isinstance(architecture, Architecture):
        raise ValueError(
            f"unknown architecture {architecture!r}; valid names are {sorted(ARCHITECTURES)}, "
            "or pass a sktransfer.multitask.Architecture or an nn.Module with "
            "forward(X, task_ids=None)"
        )
    architecture._validate_params()
    return architecture.build(make_trunk, X_example, n_tasks, n_outputs)
