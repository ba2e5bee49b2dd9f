"""Inner-update strategies: how one inner step moves the parameters being adapted.

The inner loop (:func:`~sktransfer.meta.inner_loop`) computes the support
loss of a task and its gradient with respect to the adapted parameters; an
:class:`InnerUpdate` turns ``(params, grads, loss)`` into the next
parameters. The strategies of the package:

* :class:`SGDUpdate`: ``p - lr * g``, a fixed step size (MAML, first-order
  MAML, ANIL, Reptile);
* :class:`MetaSGDUpdate`: ``p - alpha * g`` with a meta-learned step size
  ``alpha`` per parameter entry (Meta-SGD, Li et al., 2017);
* :class:`MetaLSTMUpdate`: a learned update rule, the cell update of Ravi &
  Larochelle's meta-learner LSTM.

An update is an :class:`torch.nn.Module`: the meta-model registers it as
``inner_update``, so its parameters (learned step sizes, gate weights) are
meta-parameters, trained by the outer optimizer with the initial weights.
"""

import math
from abc import ABCMeta, abstractmethod
from numbers import Real

import torch
from torch import nn

__all__ = ["InnerUpdate", "MetaLSTMUpdate", "MetaSGDUpdate", "SGDUpdate", "as_inner_update",
           "build_inner_update"]


class InnerUpdate(nn.Module, metaclass=ABCMeta):
    """Base class of the inner-update strategies.

    A subclass implements :meth:`step`; every other hook has a documented
    default. ``step`` must be a function of tensors that :mod:`torch.func`
    can transform (no ``.item()``, no in-place change of its own tensors):
    the vmapped meta-step runs it under :func:`torch.func.vmap` and, for the
    second-order meta-gradient, differentiates through it. (With
    ``task_batching="auto"``, a strategy that cannot be vmapped makes the
    estimator use the per-task loop.)

    The hooks:

    * :meth:`build(params, inner_lr) <build>`, a class method: the strategy
      for a learner whose adapted parameters are ``params``. Default:
      ``cls(inner_lr)``.
    * :meth:`init_state(params) <init_state>`: the state carried from one
      step to the next. Default: ``None``.
    * :meth:`step(params, grads, loss, state) <step>`: one inner step;
      returns ``(new_params, new_state)``. Abstract.
    * :meth:`for_adaptation(head_rows=None) <for_adaptation>`: the update that
      adapting after meta-training runs. Default: ``self``.

    Parameters
    ----------
    *args
        Passed to :class:`torch.nn.Module`, which accepts none. The class is
        abstract: a subclass defines its own constructor parameters.
    **kwargs
        Passed to :class:`torch.nn.Module`, which accepts none.
    """

    @classmethod
    def build(cls, params, inner_lr):
        """The strategy for a learner whose adapted parameters are ``params``.

        Called once when the estimator builds its meta-model.

        Parameters
        ----------
        params : dict of str to Tensor
            The parameters the inner loop adapts (their names and shapes).
        inner_lr : float
            The estimator's ``inner_lr``.

        Returns
        -------
        InnerUpdate
            ``cls(inner_lr)`` by default.
        """
        return cls(inner_lr)

    def init_state(self, params):
        """The state of the first step for the parameters ``params``.

        Called once per inner loop (per task), before the first step.

        Parameters
        ----------
        params : dict of str to Tensor
            The parameters being adapted, at the start of the inner loop.

        Returns
        -------
        object
            The ``state`` argument of the first :meth:`step`. Default:
            ``None``, for strategies without state.
        """
        return None

    @abstractmethod
    def step(self, params, grads, loss, state):
        """One inner step.

        Parameters
        ----------
        params : dict of str to Tensor
            The parameters being adapted.
        grads : dict of str to Tensor
            The gradient of the support loss with respect to each of them.
        loss : Tensor
            The support loss (a scalar) at ``params``.
        state
            What :meth:`init_state` or the previous step returned.

        Returns
        -------
        (dict of str to Tensor, state)
            The next parameters, with the same keys, and the next state.
        """

    def for_adaptation(self, head_rows=None):
        """The update that adaptation after meta-training runs (``adapt``, ``predict``).

        Adaptation needs no graph to the meta-parameters.

        Parameters
        ----------
        head_rows : int or None, default=None
            The new width of the head (the rows of ``head.weight`` and
            ``head.bias``) when the support set has a different number of
            classes than the meta-trained head, else ``None``: a strategy with
            a tensor per parameter entry must then give the head's rows a
            size-independent value.

        Returns
        -------
        InnerUpdate
            The update to adapt with. Default: ``self``.
        """
        return self


class SGDUpdate(InnerUpdate):
    """Gradient descent with a fixed step size: ``p - lr * g``.

    Parameters
    ----------
    lr : float, Tensor or dict of str to Tensor
        The step size, for every parameter or (a dict) for each parameter
        entry.
    """

    def __init__(self, lr):
        super().__init__()
        self.lr = lr if isinstance(lr, (dict, torch.Tensor)) else float(lr)

    def step(self, params, grads, loss, state):
        """One inner step: ``p - lr * g`` for every parameter.

        Parameters
        ----------
        params : dict of str to Tensor
            The parameters being adapted.
        grads : dict of str to Tensor
            The gradient of the support loss with respect to each of them.
        loss : Tensor
            The support loss at ``params``; not used.
        state : object
            Passed through unchanged.

        Returns
        -------
        (dict of str to Tensor, object)
            The next parameters, with the same keys, and ``state`` unchanged.
        """
        lr = self.lr
        if isinstance(lr, dict):
            return {k: params[k] - lr[k] * grads[k] for k in params}, state
        return {k: params[k] - lr * grads[k] for k in params}, state


def _key(name):
    """A parameter name as a key of a ParameterDict (no dots)."""
    return name.replace(".", "__")


class MetaSGDUpdate(InnerUpdate):
    """Meta-SGD: ``p - alpha * g`` with a meta-learned step size per parameter entry.

    The step sizes ``alpha`` start at ``inner_lr`` and are meta-learned with
    the initial parameters (Li et al., 2017, "Meta-SGD: learning to learn
    quickly for few-shot learning").

    Parameters
    ----------
    rates : dict of str to Tensor
        The initial step sizes, one tensor of each adapted parameter's shape.

    Attributes
    ----------
    lrs : nn.ParameterDict
        The step sizes; the key of a parameter is its name with ``__`` for ``.``.
    """

    def __init__(self, rates):
        super().__init__()
        self.param_names = list(rates)
        self.lrs = nn.ParameterDict({_key(n): nn.Parameter(r) for n, r in rates.items()})

    @classmethod
    def build(cls, params, inner_lr):
        return cls({n: torch.full_like(p, float(inner_lr)) for n, p in params.items()})

    def rates(self):
        """The step size of every adapted parameter, by parameter name."""
        return {n: self.lrs[_key(n)] for n in self.param_names}

    def step(self, params, grads, loss, state):
        """One inner step: ``p - alpha * g`` with the meta-learned step sizes.

        Parameters
        ----------
        params : dict of str to Tensor
            The parameters being adapted.
        grads : dict of str to Tensor
            The gradient of the support loss with respect to each of them.
        loss : Tensor
            The support loss at ``params``; not used.
        state : object
            Passed through unchanged.

        Returns
        -------
        (dict of str to Tensor, object)
            The next parameters, with the same keys, and ``state`` unchanged.
        """
        lrs = self.lrs
        return {k: params[k] - lrs[_key(k)] * grads[k] for k in params}, state

    def for_adaptation(self, head_rows=None):
        """Plain SGD with the learned step sizes, detached.

        Parameters
        ----------
        head_rows : int or None, default=None
            The new number of rows of the head's parameters when the support
            set has a different number of classes than the meta-trained head
            (every row's step size is then the mean of the meta-learned rows'),
            else ``None``.

        Returns
        -------
        SGDUpdate
            Gradient descent with a step size per parameter entry.
        """
        rates = {}
        for n, lr in self.rates().items():
            lr = lr.detach()
            if head_rows is not None and n.startswith("head.") and lr.shape[0] != head_rows:
                lr = lr.mean(0, keepdim=True).expand(head_rows, *lr.shape[1:])
            rates[n] = lr
        return SGDUpdate(rates)


class MetaLSTMUpdate(InnerUpdate):
    """A learned inner-loop update rule: the cell update of Ravi & Larochelle's meta-learner.

    The learner's parameters are the cell state of an LSTM. For every
    coordinate, with gradient ``g``, inner loss ``L`` and parameter ``p``::

        i_t = sigmoid(w_i . [g, L, p, i_{t-1}] + b_i)     # input gate: the step size
        f_t = sigmoid(w_f . [g, L, p, f_{t-1}] + b_f)     # forget gate: shrinkage
        p_t = f_t * p_{t-1} - i_t * g

    The gate weights are shared by all coordinates and meta-learned with the
    initial parameters, so the update rule itself is learned (Ravi &
    Larochelle, 2017, "Optimization as a model for few-shot learning"; the
    gates read the raw gradient and loss instead of their preprocessed,
    LSTM-encoded form). It starts as plain gradient descent with step
    ``inner_lr`` (``w = 0``, ``sigmoid(b_i) = inner_lr``, ``f`` close to 1).

    Parameters
    ----------
    inner_lr : float
        The step size of the initial rule (``sigmoid(b_i)``), clipped to
        ``[1e-6, 1 - 1e-6]``.
    """

    def __init__(self, inner_lr):
        super().__init__()
        lr = min(max(float(inner_lr), 1e-6), 1 - 1e-6)
        self.w_i = nn.Parameter(torch.zeros(4))
        self.b_i = nn.Parameter(torch.tensor(math.log(lr / (1 - lr))))
        self.w_f = nn.Parameter(torch.zeros(4))
        self.b_f = nn.Parameter(torch.tensor(6.0))

    def init_state(self, params):
        """The gates of the first step: ``sigmoid(b_i)`` and ``sigmoid(b_f)`` everywhere.

        Parameters
        ----------
        params : dict of str to Tensor
            The parameters being adapted, at the start of the inner loop.

        Returns
        -------
        dict of str to (Tensor, Tensor)
            For every parameter, the previous input and forget gates
            (``i_{t-1}``, ``f_{t-1}``), of the parameter's shape.
        """
        i0 = torch.sigmoid(self.b_i)
        f0 = torch.sigmoid(self.b_f)
        return {k: (i0.expand_as(p), f0.expand_as(p)) for k, p in params.items()}

    def forward(self, p, g, loss, state):
        """The cell update of one parameter tensor: ``(p_t, (i_t, f_t))``."""
        i_prev, f_prev = state
        i = torch.sigmoid(self.w_i[0] * g + self.w_i[1] * loss + self.w_i[2] * p
                          + self.w_i[3] * i_prev + self.b_i)
        f = torch.sigmoid(self.w_f[0] * g + self.w_f[1] * loss + self.w_f[2] * p
                          + self.w_f[3] * f_prev + self.b_f)
        return f * p - i * g, (i, f)

    def step(self, params, grads, loss, state):
        """One inner step: the cell update of every parameter tensor.

        Parameters
        ----------
        params : dict of str to Tensor
            The parameters being adapted.
        grads : dict of str to Tensor
            The gradient of the support loss with respect to each of them.
        loss : Tensor
            The support loss at ``params``; an input of both gates.
        state : dict of str to (Tensor, Tensor)
            The previous gates of every parameter (see :meth:`init_state`).

        Returns
        -------
        (dict of str to Tensor, dict of str to (Tensor, Tensor))
            The next parameters, with the same keys, and the new gates.
        """
        new, new_state = {}, {}
        for k in params:
            new[k], new_state[k] = self(params[k], grads[k], loss, state[k])
        return new, new_state


#: The named inner updates of ``inner_optimizer``.
INNER_UPDATES = {"sgd": SGDUpdate, "meta_lstm": MetaLSTMUpdate}


def build_inner_update(inner_optimizer, learn_inner_lr, inner_lr, params):
    """The inner update of a MAML-family estimator, from its parameters.

    ``learn_inner_lr=True`` is Meta-SGD (with ``inner_optimizer="sgd"``;
    the estimator rejects other combinations); ``inner_optimizer`` is a name
    of :data:`INNER_UPDATES` or an :class:`InnerUpdate` subclass, built with
    its :meth:`~InnerUpdate.build` for the adapted parameters ``params``.
    """
    if learn_inner_lr:
        cls = MetaSGDUpdate
    elif isinstance(inner_optimizer, str):
        cls = INNER_UPDATES[inner_optimizer]
    else:
        cls = inner_optimizer
    update = cls.build(params, inner_lr)
    if not isinstance(update, InnerUpdate):
        raise TypeError(f"{cls.__name__}.build returned {type(update).__name__}, not an "
                        "InnerUpdate")
    return update


def as_inner_update(update):
    """``update`` if it is an :class:`InnerUpdate`; a step size (a number, a tensor
    or a dict of tensors per parameter) as :class:`SGDUpdate`."""
    if isinstance(update, InnerUpdate):
        return update
    if isinstance(update, (Real, torch.Tensor, dict)) and not isinstance(update, bool):
        return SGDUpdate(update)
    raise TypeError("update must be an InnerUpdate or a step size (a number, a tensor or a "
                    f"dict of tensors), got {type(update).__name__}")
