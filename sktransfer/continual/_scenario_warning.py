"""A warning for strategies known not to address the chosen scenario.

Regularisation strategies alone (EWC, online EWC, SI, MAS, LwF) protect the
weights or the outputs of a network, but in the class-incremental scenario
the single head is trained on the current task's classes only, so its bias
towards them wipes out the old classes whatever the penalty (van de Ven
and Tolias, 2019; Hsu et al., 2018): accuracy stays near naive fine-tuning.
What works there keeps samples: replay, DER / DER++, iCaRL, GDumb, ER-ACE.
"""

import os
import sys
import warnings

__all__ = ["warn_unsuited_scenario"]

_WORKS = "Replay ('replay'), DERPlusPlus ('derpp'), ICaRL ('icarl') or GDumb ('gdumb')"


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _caller_stacklevel():
    """The ``stacklevel`` of the first frame outside sktransfer (the user's call)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def warn_unsuited_scenario(strategies, scenario):
    """Warn when ``strategies`` are known not to address ``scenario``.

    In the ``"class"`` scenario, a combination of regularisation strategies
    (EWC, online EWC, SI, MAS, LwF) without any strategy that keeps a
    memory of past samples raises a ``UserWarning`` that names what does
    work. Naive fine-tuning, a baseline on purpose, is not warned about; nor
    is any strategy in the task and domain scenarios. The estimators call
    this when they start learning (``fit``, first ``partial_fit``).

    Parameters
    ----------
    strategies : list of Strategy
        The strategies trained with together.
    scenario : {"task", "domain", "class"}
        The continual scenario.

    Returns
    -------
    bool
        Whether a warning was raised.

    Examples
    --------
    >>> import warnings
    >>> from sktransfer.continual import EWC, Replay, warn_unsuited_scenario
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_unsuited_scenario([EWC()], "class")
    True
    >>> "replay" in str(caught[0].message)
    True
    >>> warn_unsuited_scenario([EWC(), Replay()], "class")
    False
    """
    if scenario != "class":
        return False
    if any(getattr(s, "_keeps_memory", False) for s in strategies):
        return False
    unsuited = [type(s).__name__ for s in strategies if getattr(s, "_regularization_only", False)]
    if not unsuited:
        return False
    warnings.warn(
        f"{', '.join(unsuited)} without a memory of past samples does not address the "
        "class-incremental scenario (scenario='class'): the single head forgets the old "
        f"classes, and accuracy stays near naive fine-tuning. Use {_WORKS}, or combine the "
        "strategy with one of them (e.g. strategy=[EWC(), Replay()]); in the 'task' or "
        "'domain' scenario it applies as it is.",
        UserWarning, stacklevel=_caller_stacklevel())
    return True
