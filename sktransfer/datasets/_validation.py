"""Parameter checks shared by the data-set generators, the loaders and the metrics.

The generators use scikit-learn's :func:`~sklearn.utils._param_validation.validate_params`;
a bad value raises :class:`~sklearn.utils._param_validation.InvalidParameterError`, a
subclass of both :class:`ValueError` and :class:`TypeError`, whose message names the
parameter. These helpers add what scikit-learn's constraints do not say: that a bool is not
a count, and checks of array-valued parameters.
"""

import reprlib
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    validate_parameter_constraints,
)

__all__ = [
    "InvalidParameterError",
    "NumberInterval",
    "check_param",
    "finite_numbers",
    "non_negative_real",
    "positive_int",
]


class NumberInterval(Interval):
    """An :class:`~sklearn.utils._param_validation.Interval` that rejects bools.

    ``True`` is an ``Integral`` (and a ``Real``) to Python, so scikit-learn's ``Interval``
    accepts it as ``1``; as a count, a size or a noise level it is a mistake. Like every
    ``Interval``, it never holds NaN, and a right bound of ``np.inf`` with
    ``closed="left"`` or ``"neither"`` excludes inf.
    """

    def is_satisfied_by(self, val):
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)


def positive_int():
    """Constraint: an int >= 1, not a bool."""
    return NumberInterval(Integral, 1, None, closed="left")


def non_negative_real():
    """Constraint: a finite real >= 0 (no NaN, no inf), not a bool."""
    return NumberInterval(Real, 0, np.inf, closed="left")


def check_param(name, value, constraints, caller):
    """Validate one parameter the way ``validate_params`` does (for conditional checks)."""
    validate_parameter_constraints({name: constraints}, {name: value}, caller_name=caller)
    return value


def finite_numbers(values, name):
    """``values`` as a float ndarray, or an error naming ``name``.

    Raises :class:`InvalidParameterError` (a ``TypeError`` and a ``ValueError``) for
    strings, bools, None, complex numbers or anything else that is not real numbers, and
    ``ValueError`` for NaN or infinite entries, listing the first of them.
    """
    if isinstance(values, (str, bytes)):
        raise InvalidParameterError(
            f"{name} must be an array-like of real numbers, got the string {values!r}."
        )
    try:
        raw = np.asarray(values)
        if raw.dtype.kind in "bcSUV" or (raw.dtype.kind == "O" and any(
            v is None or isinstance(v, (bool, np.bool_, complex, str, bytes))
            for v in raw.ravel()
        )):
            raise TypeError(f"dtype {raw.dtype}")
        array = raw.astype(float)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"{name} must be an array-like of real numbers, got {reprlib.repr(values)} "
            f"({exc})."
        ) from exc
    bad = ~np.isfinite(array)
    if bad.any():
        entries = []
        for i in np.flatnonzero(bad)[:3]:
            index = tuple(int(j) for j in np.unravel_index(i, array.shape))
            at = f"[{', '.join(map(str, index))}]" if index else ""
            entries.append(f"{name}{at} = {array[index]}")
        more = f" and {int(bad.sum()) - 3} more" if bad.sum() > 3 else ""
        raise ValueError(
            f"{name} must hold finite numbers, but it has NaN or infinite values: "
            f"{', '.join(entries)}{more}."
        )
    return array
