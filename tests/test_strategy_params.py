"""scikit-learn-style parameter validation of every strategy object.

Multi-task weightings and architectures and continual-learning strategies
declare their ``__init__`` parameters in ``_parameter_constraints`` and are
validated with ``_validate_params()`` wherever they are resolved. The
classes are collected from the registries and from the subclasses of the
base classes, so a new strategy is covered here automatically.
"""

import inspect
from numbers import Integral, Real

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.utils._param_validation import Interval, InvalidParameterError, Options

from sktransfer import MultiTaskClassifier
from sktransfer.continual import (
    AGEM,
    EWC,
    STRATEGIES,
    ContinualClassifier,
    EWCContinualClassifier,
    JointTraining,
    LwF,
    Naive,
    Replay,
    Strategy,
    SynapticIntelligence,
)
from sktransfer.continual._classifier import get_strategies
from sktransfer.multitask import (
    ARCHITECTURES,
    MTAN,
    WEIGHTINGS,
    AlignedMTLWeighting,
    Architecture,
    CAGradWeighting,
    CrossStitch,
    DWAWeighting,
    EqualWeighting,
    FAMOWeighting,
    GradNormWeighting,
    HardParameterSharing,
    IMTLWeighting,
    Independent,
    MGDAUBWeighting,
    MGDAWeighting,
    MMoE,
    NashMTLWeighting,
    PCGradWeighting,
    RLWWeighting,
    Sluice,
    StaticWeighting,
    TaskConditioning,
    UncertaintyWeighting,
    UPGradWeighting,
    Weighting,
)
from sktransfer.multitask._registry import build_architecture, get_weighting

KNOWN = [
    EqualWeighting, StaticWeighting, UncertaintyWeighting, DWAWeighting, RLWWeighting,
    FAMOWeighting, GradNormWeighting, MGDAWeighting, MGDAUBWeighting, PCGradWeighting,
    CAGradWeighting, IMTLWeighting, UPGradWeighting, AlignedMTLWeighting, NashMTLWeighting,
    HardParameterSharing, Independent, CrossStitch, Sluice, MTAN, MMoE, TaskConditioning,
    Naive, JointTraining, EWC, SynapticIntelligence, LwF, Replay, AGEM,
]


def _subclasses(base):
    for sub in base.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _strategy_classes():
    found = set(KNOWN)
    for registry in (WEIGHTINGS, ARCHITECTURES, STRATEGIES):
        for make in registry.values():  # a class, or a factory ("online_ewc")
            found.add(make if isinstance(make, type) else type(make()))
    from sktransfer.meta import Adaptation
    from sktransfer.transfer import STRATEGIES as TRANSFER_STRATEGIES
    from sktransfer.transfer import TransferRegularizer, TransferStrategy

    found.update(TRANSFER_STRATEGIES.values())
    for base in (Weighting, Architecture, Strategy, TransferStrategy, TransferRegularizer,
                 Adaptation):
        found.update(sub for sub in _subclasses(base)
                     if sub.__module__.startswith("sktransfer.") and not inspect.isabstract(sub))
    return sorted(found, key=lambda cls: cls.__name__)


CLASSES = _strategy_classes()
PARAMS = [(cls, name) for cls in CLASSES for name in sorted(cls().get_params(deep=False))]


def _is_numeric(constraint):
    return isinstance(constraint, Interval) or (
        isinstance(constraint, Options) and constraint.type in (Integral, Real))


NUMERIC = [(cls, name) for cls, name in PARAMS
           if any(_is_numeric(c) for c in cls._parameter_constraints[name])]


def _out_of_range(constraints):
    """Numbers just outside the declared intervals / options (NaN and inf aside)."""
    values = []
    for c in constraints:
        if isinstance(c, Interval):
            if c.left is not None and np.isfinite(c.left):
                values.append(c.left - 1)
                if c.closed in ("right", "neither"):
                    values.append(c.left)
            if c.right is not None and np.isfinite(c.right):
                values.append(c.right + 1)
                if c.closed in ("left", "neither"):
                    values.append(c.right)
            if c.type is Integral:
                values.append(1.5)  # a float is not an int
        elif isinstance(c, Options):
            values.append(max(c.options) + 1)
            values.append(1.5)
    return values


# Numeric parameters with a bound (init_log_var is any finite number).
BOUNDED = [(cls, name) for cls, name in NUMERIC
           if _out_of_range(cls._parameter_constraints[name])]


def _param_id(p):
    return f"{p[0].__name__}.{p[1]}" if isinstance(p, tuple) else None


class _Opaque:
    """A value of a type no constraint accepts."""


def _message(cls, name):
    return rf"The '{name}' parameter of {cls.__name__} must be .* Got "


def test_every_known_strategy_is_collected():
    assert set(KNOWN) <= set(CLASSES)
    assert len(CLASSES) >= 29


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_constraints_cover_exactly_the_init_parameters(cls):
    assert isinstance(cls._parameter_constraints, dict)
    assert set(cls._parameter_constraints) == set(cls().get_params(deep=False))
    assert all(isinstance(v, list) and v for v in cls._parameter_constraints.values())


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_default_parameters_are_valid(cls):
    cls()._validate_params()  # raises InvalidParameterError otherwise
    assert set(cls._parameter_constraints) == set(cls().get_params(deep=False))


@pytest.mark.parametrize("cls, name", PARAMS, ids=_param_id)
def test_a_value_of_a_bad_type_is_rejected(cls, name):
    obj = cls().set_params(**{name: _Opaque()})
    with pytest.raises(InvalidParameterError, match=_message(cls, name)):
        obj._validate_params()


@pytest.mark.parametrize("cls, name", NUMERIC, ids=_param_id)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_nan_and_inf_are_rejected(cls, name, value):
    obj = cls().set_params(**{name: value})
    with pytest.raises(InvalidParameterError, match=_message(cls, name)):
        obj._validate_params()


@pytest.mark.parametrize("cls, name", BOUNDED, ids=_param_id)
def test_out_of_range_numbers_are_rejected(cls, name):
    for value in _out_of_range(cls._parameter_constraints[name]):
        obj = cls().set_params(**{name: value})
        with pytest.raises(InvalidParameterError, match=_message(cls, name)):
            obj._validate_params()


@pytest.mark.parametrize("obj, name", [
    (CrossStitch(init_self=1.5), "init_self"),
    (CrossStitch(init_self=-0.1), "init_self"),
    (Sluice(orthogonality=-1), "orthogonality"),
    (Sluice(n_subspaces=0), "n_subspaces"),
    (Sluice(n_subspaces=2.0), "n_subspaces"),
    (MMoE(n_experts=0), "n_experts"),
    (HardParameterSharing(task_covariance_penalty=-1e-3), "task_covariance_penalty"),
    (TaskConditioning(where="middle"), "where"),
    (TaskConditioning(how="sum"), "how"),
    (UncertaintyWeighting(init_log_var=np.nan), "init_log_var"),
    (UncertaintyWeighting(init_log_var="0"), "init_log_var"),
    (DWAWeighting(temperature=0), "temperature"),
    (FAMOWeighting(lr=0), "lr"),
    (FAMOWeighting(gamma=-1), "gamma"),
    (FAMOWeighting(update="sometimes"), "update"),
    (GradNormWeighting(alpha=-0.5), "alpha"),
    (MGDAWeighting(normalization="l3"), "normalization"),
    (MGDAUBWeighting(solver="cvx"), "solver"),
    (CAGradWeighting(c=-1), "c"),
    (CAGradWeighting(rescale=3), "rescale"),
    (CAGradWeighting(rescale=1.0), "rescale"),
    (UPGradWeighting(reg_eps=-1), "reg_eps"),
    (AlignedMTLWeighting(scale_mode="max"), "scale_mode"),
    (NashMTLWeighting(max_norm="x"), "max_norm"),
    (StaticWeighting(weights=1.0), "weights"),
    (EWC(ewc_lambda=-1), "ewc_lambda"),
    (EWC(fisher="diag"), "fisher"),
    (EWC(gamma=0), "gamma"),
    (EWC(gamma=1.5), "gamma"),
    (EWC(fisher_n_samples=0), "fisher_n_samples"),
    (SynapticIntelligence(xi=0), "xi"),
    (SynapticIntelligence(si_c=-1), "si_c"),
    (LwF(temperature=0), "temperature"),
    (LwF(alpha=-1), "alpha"),
    (Replay(memory_size=0), "memory_size"),
    (Replay(replay_batch_size=0), "replay_batch_size"),
    (AGEM(memory_size=10.0), "memory_size"),
    (AGEM(sample_size=0), "sample_size"),
], ids=repr)
def test_specific_bad_values(obj, name):
    with pytest.raises(InvalidParameterError, match=_message(type(obj), name)):
        obj._validate_params()


@pytest.mark.parametrize("obj", [
    CrossStitch(init_self=0.0), CrossStitch(init_self=np.float64(1.0)),
    Sluice(n_subspaces=np.int64(3), orthogonality=0), MMoE(n_experts=1),
    UncertaintyWeighting(init_log_var=-3), CAGradWeighting(c=0, rescale=np.int64(2)),
    NashMTLWeighting(max_norm=0), StaticWeighting([1, 0.5]), StaticWeighting({"a": 2.0}),
    StaticWeighting(np.ones(3)), EWC(gamma=1, fisher_n_samples=np.int64(5)),
    EWC(ewc_lambda=0), Replay(memory_size=1, replay_batch_size=4), AGEM(sample_size=1),
], ids=repr)
def test_valid_values_are_accepted(obj):
    obj._validate_params()


# ------------------------------------------------------- resolution paths
def test_get_weighting_validates():
    with pytest.raises(InvalidParameterError, match=_message(DWAWeighting, "temperature")):
        get_weighting(DWAWeighting(temperature=np.nan), tasks=[0, 1])
    assert isinstance(get_weighting("famo", tasks=[0, 1]), FAMOWeighting)
    with pytest.raises(InvalidParameterError, match=_message(StaticWeighting, "weights")):
        get_weighting(StaticWeighting(weights="abc"), tasks=[0, 1])
    # data-dependent checks stay clear ValueErrors
    with pytest.raises(ValueError, match="one weight per task"):
        get_weighting(StaticWeighting([1.0]), task_weights=[1.0, 2.0, 3.0], tasks=[0, 1])


def test_build_architecture_validates_before_building():
    def make_trunk(n_in):
        raise AssertionError("nothing may be built from invalid parameters")

    X = torch.zeros(2, 4)
    for arch in (CrossStitch(init_self=np.nan), Sluice(orthogonality=-1),
                 CrossStitch().set_params(init_self=np.inf)):
        with pytest.raises(InvalidParameterError, match=type(arch).__name__):
            build_architecture(arch, make_trunk, X, 2, 3)


def test_get_strategies_and_build_validate():
    with pytest.raises(InvalidParameterError, match=_message(EWC, "ewc_lambda")):
        get_strategies([Naive(), EWC(ewc_lambda=np.inf)])
    assert [type(s) for s in get_strategies(["online_ewc", "replay"])] == [EWC, Replay]
    with pytest.raises(InvalidParameterError, match=_message(LwF, "temperature")):
        LwF(temperature=np.nan).build("class")
    from sktransfer.continual import Plugin

    assert isinstance(LwF().build("class"), Plugin)


# ------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny():
    X, y = load_digits(return_X_y=True)
    X, y = (X[:100] / 16).astype(np.float32), y[:100]
    return X, y, (y >= 5).astype(int)


MT = dict(hidden_layer_sizes=(8,), max_epochs=1, random_state=0)


@pytest.mark.parametrize("params, name", [
    (dict(architecture=CrossStitch(init_self=np.nan)), "init_self"),
    (dict(architecture=Sluice(orthogonality=-1)), "orthogonality"),
    (dict(architecture="sluice", weighting=FAMOWeighting(lr=np.inf)), "lr"),
    (dict(weighting=UncertaintyWeighting(init_log_var=np.nan)), "init_log_var"),
], ids=["cross_stitch", "sluice", "famo", "uncertainty"])
def test_multitask_fit_rejects_bad_strategy_params(tiny, params, name):
    X, y, t = tiny
    clf = MultiTaskClassifier(**params, **MT)
    with pytest.raises(ValueError, match=rf"The '{name}' parameter of \w+ must be"):
        clf.fit(X, y, task_ids=t)
    assert not hasattr(clf, "net_")


def test_multitask_fit_accepts_numpy_scalars(tiny):
    X, y, t = tiny
    arch = Sluice(n_subspaces=np.int64(2), init_self=np.float64(0.8))
    clf = MultiTaskClassifier(architecture=arch, **MT).fit(X, y, task_ids=t)
    assert clf.predict(X[:3], task_ids=t[:3]).shape == (3,)


@pytest.mark.parametrize("clf, name", [
    (ContinualClassifier(strategy=EWC(ewc_lambda=np.nan), **MT), "ewc_lambda"),
    (ContinualClassifier(strategy=[Replay(), AGEM(sample_size=np.inf)], **MT), "sample_size"),
    (EWCContinualClassifier(gamma=np.nan, **MT), "gamma"),  # through Strategy.build
], ids=["ewc", "agem", "ewc_classifier"])
def test_continual_fit_rejects_bad_strategy_params(tiny, clf, name):
    X, y, t = tiny
    with pytest.raises(ValueError, match=rf"The '{name}' parameter of \w+ must be"):
        clf.fit(X, y, task_ids=t)
    assert not hasattr(clf, "net_")


def test_continual_fit_accepts_numpy_scalars(tiny):
    X, y, t = tiny
    clf = ContinualClassifier(strategy=Replay(memory_size=np.int64(20)), **MT)
    assert clf.fit(X, y, task_ids=t).n_tasks_ == 2
