"""Resolving the ``pretrained`` argument into a private copy of the source network.

``pretrained`` is a hyperparameter, so it must survive :func:`sklearn.base.clone`
unchanged. The accepted forms are:

* an ``nn.Module`` instance: deep-copied at every fit, never modified;
* a zero-argument factory (a function or an ``nn.Module`` class) returning a module;
* a pair ``(factory, path)``: the factory builds the architecture and the
  weights are read from ``path`` (safetensors, or a torch file read with
  ``weights_only=True``); a weights file is never unpickled;
* ``sklearn.frozen.FrozenEstimator(fitted)``, where ``fitted`` is a fitted
  sktransfer estimator or skorch net. ``FrozenEstimator`` is returned as is
  by ``clone``, so the fitted model is never reset.

A bare fitted estimator is rejected: ``clone`` would turn it into an unfitted
copy and the "pretrained" weights would silently be random.
"""

import copy
import os

from sklearn.frozen import FrozenEstimator
from torch import nn

from ..base import NeuralEstimatorMixin, call_module_factory, load_state_dict

__all__ = ["PRETRAINED_CONSTRAINT", "resolve_pretrained"]

#: The ``_parameter_constraints`` entry of ``pretrained``: checked by
#: :func:`resolve_pretrained` instead, whose errors say which form was meant (a bare
#: fitted estimator must be wrapped in ``FrozenEstimator``, a pair is (factory, path)).
PRETRAINED_CONSTRAINT = "no_validation"

_FORMS = (
    "an nn.Module instance, a zero-argument factory returning one, a pair "
    "(factory, weights_path), or sklearn.frozen.FrozenEstimator(fitted_estimator)"
)


def _is_estimator(obj):
    return hasattr(obj, "fit") and hasattr(obj, "get_params")


def _module_of_estimator(est):
    """(module copy, has_output_layer) of a fitted sktransfer estimator or skorch net."""
    from skorch import NeuralNet

    name = type(est).__name__
    if isinstance(est, NeuralNet):
        if not getattr(est, "initialized_", False):
            raise ValueError(f"the {name} inside FrozenEstimator is not initialized/fitted; "
                             "fit it before using it as pretrained")
        return copy.deepcopy(est.module_), True
    net = getattr(est, "net_", None)
    if net is None or not hasattr(net, "module_"):
        if type(est).__module__.startswith("sktransfer"):
            raise ValueError(f"the {name} inside FrozenEstimator is not fitted; fit it before "
                             "using it as pretrained")
        raise TypeError(
            f"FrozenEstimator must wrap a fitted sktransfer estimator or a fitted skorch net "
            f"(something with a trained PyTorch module); got {name}"
        )
    if isinstance(est, NeuralEstimatorMixin):  # says itself what it hands over
        return est.get_pretrained_module()
    return copy.deepcopy(net.module_), True


def _call_factory(factory):
    return call_module_factory(factory, "the pretrained factory must return an nn.Module")


def resolve_pretrained(pretrained):
    """Build a fresh copy of the source network from ``pretrained``.

    Call it under the estimator's seeded RNG context, so factories and lazy
    modules initialise reproducibly.

    Returns
    -------
    module : nn.Module
        A new module owned by the caller, with every parameter trainable.
    has_output_layer : bool
        False when the source is a feature extractor without an output layer
        (the shared trunk of a multi-task model): a head must be added.
    """

    has_output = True
    if isinstance(pretrained, FrozenEstimator):
        module, has_output = _module_of_estimator(pretrained.estimator)
    elif isinstance(pretrained, nn.Module):
        module = copy.deepcopy(pretrained)
    elif _is_estimator(pretrained):
        name = type(pretrained).__name__
        raise TypeError(
            f"pretrained is a {name} estimator. clone() (used by GridSearchCV, "
            f"cross_validate, ...) would reset it to an unfitted copy, so it is not accepted "
            f"as is: wrap the fitted model as pretrained=FrozenEstimator(fitted_{name.lower()}) "
            f"(from sklearn.frozen import FrozenEstimator)"
        )
    elif isinstance(pretrained, (str, bytes, os.PathLike)):
        raise TypeError(
            f"pretrained={pretrained!r} is a path: a weights file needs the architecture it "
            f"belongs to; pass pretrained=(factory, path), where factory() builds the network"
        )
    elif isinstance(pretrained, (tuple, list)):
        if len(pretrained) != 2 or not callable(pretrained[0]) or not isinstance(
            pretrained[1], (str, os.PathLike)
        ):
            raise TypeError(
                f"a pretrained pair must be (factory, weights_path) with a callable factory and "
                f"a path; got {pretrained!r}"
            )
        factory, path = pretrained
        module = _call_factory(factory)
        state = load_state_dict(path)
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(
                f"the weights in {os.fspath(path)} do not match the architecture built by "
                f"{getattr(factory, '__name__', factory)!r}: {exc}"
            ) from exc
    elif callable(pretrained):
        module = _call_factory(pretrained)
    else:
        raise TypeError(f"pretrained must be {_FORMS}; got {type(pretrained).__name__}")
    for p in module.parameters():
        if not nn.parameter.is_lazy(p):
            p.requires_grad_(True)
    return module, has_output
