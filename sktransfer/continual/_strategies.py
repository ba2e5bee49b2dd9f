"""Continual-learning strategies: configuration objects and their training hooks.

A strategy is a small scikit-learn-style object (``get_params`` /
``set_params``) that holds configuration only, so ``GridSearchCV`` can search
``strategy`` and its parameters (``strategy__ewc_lambda``). When an estimator
starts learning, :meth:`Strategy.build` returns a fresh *plugin* that holds
the strategy's state (Fisher information, replay buffer, old model, ...) and
implements some of the hooks below. Several plugins can act together (EWC
plus replay): the estimator calls each hook on every plugin in order.

Hooks, in the order they run:

``training_data(task)``
    Before a task: the :class:`Task` the network trains on (joint training
    returns every task seen so far).
``before_task(net, task)``
    Before training on a task (LwF keeps a frozen copy of the network).
``augment_batch(net, X, y)``
    Every step: extra rows for the mini-batch (replay adds memory samples).
    ``X`` is the batch dict (``"X"``, ``"task_ids"`` and, for weighted data,
    ``"sample_weight"``); rows added to a weighted batch need weights too.
``loss_logits(net, X, y_pred, y)``
    Every step: the logits the data loss is computed on (ER-ACE masks the
    classes absent from the incoming batch); unchanged by default.
``extra_loss(net, X, y_pred, y)``
    Every step: a term added to the loss (LwF's distillation), or None.
``record_gradients(net, params, grads)``
    Every step, after the backward pass of the data loss: the unregularised
    gradients (SI's path integral).
``add_penalty_gradients(net, params, grads)``
    Every step: add the gradient of a quadratic penalty to ``grads`` in place
    (EWC, SI). Penalties are added to the gradient directly, with
    ``torch._foreach_*`` operations, instead of through autograd.
``project_gradients(net, params, grads)``
    Every step: change the gradient in place (A-GEM's projection).
``after_step(net, params)``
    Every step, after the optimiser step (SI).
``after_task(net, task)``
    After training on a task: consolidate (EWC's Fisher, SI's importance,
    filling the replay memory).
``prediction_scores(net, X, y_pred)``
    At prediction: the scores whose softmax is ``predict_proba`` (iCaRL's
    nearest-mean-of-exemplars rule); the network's logits by default.
``penalty(net)``
    The current value of the strategy's penalty (for ``history``), or 0.
``rollback_shared()``
    Data tensors that the snapshot taken before a call may share instead of
    copy (joint training's stored tasks): a failed call restores the rest.

``params`` and ``grads`` are the lists of the trainable parameters that
received a gradient this step, with ``index`` (the positions of these
parameters in ``net.params``) available as ``net.step_index``.

Every strategy declares its parameters in ``_parameter_constraints`` (the
constraint objects of :mod:`sklearn.utils._param_validation`), validated with
``_validate_params()`` when strategies are resolved and again in
:meth:`Strategy.build`; a bad value raises
``sklearn.utils._param_validation.InvalidParameterError`` (a ``ValueError``).
"""

from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval

from .._weights import SAMPLE_WEIGHT

__all__ = ["JointTraining", "Naive", "Plugin", "Strategy", "Task"]


class Task:
    """One task (experience) as tensors, as the strategies' hooks receive it.

    Parameters
    ----------
    index : int
        The task's position in the estimator's ``tasks_`` (in the task
        scenario, the head it trains).
    X : torch.Tensor of shape (n_samples, ...)
        The inputs.
    y : torch.Tensor of shape (n_samples,)
        The labels, encoded as indices into the estimator's ``classes_``.
    t : torch.Tensor of shape (n_samples,)
        The task index of every row (all ``index``, unless the task
        concatenates several, as joint training's does).
    w : torch.Tensor of shape (n_samples,) or None, default=None
        The rows' weights in the loss; None when every row weighs the same.
    """

    def __init__(self, index, X, y, t, w=None):
        self.index = index
        self.X = X
        self.y = y
        self.t = t
        self.w = w

    def __len__(self):
        return self.X.shape[0]

    def inputs(self):
        """The batch dict the network trains on."""
        inputs = {"X": self.X, "task_ids": self.t}
        if self.w is not None:
            inputs[SAMPLE_WEIGHT] = self.w
        return inputs

    def tensors(self):
        """The task's tensors (weights included when there are any)."""
        return [a for a in (self.X, self.y, self.t, self.w) if a is not None]


def concat_weights(parts):
    """The weights of rows concatenated from ``parts`` (``(n_rows, w or None)`` pairs):
    None if no part has weights, else the parts' weights with 1 for the unweighted."""
    if all(w is None for _, w in parts):
        return None
    ref = next(w for _, w in parts if w is not None)
    return torch.cat([ref.new_ones(n) if w is None else w.to(ref.device) for n, w in parts])


class Plugin:
    """The stateful side of a strategy: the hooks the continual net calls.

    :meth:`Strategy.build` returns a fresh plugin when an estimator starts
    learning; it holds the strategy's state (Fisher information, memories,
    old networks) and is pickled with the fitted model. Every hook is a
    documented no-op: a plugin overrides the ones it needs. With several
    strategies, each hook runs on every plugin, in the order of the
    estimator's ``strategy`` list. The gradient hooks run under
    ``torch.no_grad()``; ``params`` and ``grads`` are the trainable
    parameters that received a gradient this step and their gradients (their
    positions in ``net.params`` are ``net.step_index``, None for all).
    """

    def training_data(self, task):
        """Before a task: the :class:`Task` the network trains on (default: ``task``).

        Joint training returns every task seen so far, concatenated.

        Parameters
        ----------
        task : Task
            The task about to be learned (after the previous plugins'
            ``training_data``).

        Returns
        -------
        Task
            What the network trains on for this task.
        """
        return task

    def before_task(self, net, task):
        """Before training on ``task`` (LwF keeps a frozen copy of the network).

        Parameters
        ----------
        net : skorch.NeuralNet
            The estimator's private continual net (``net.module_`` is the
            network, ``net.params`` its trainable parameters).
        task : Task
            The task about to be learned, as given (before
            :meth:`training_data`).
        """

    def augment_batch(self, net, X, y):
        """Every step: the mini-batch ``(X, y)`` to train on (default: unchanged).

        Rows added to a weighted batch need weights too (replay adds memory
        samples with their weights).

        Parameters
        ----------
        net : skorch.NeuralNet
            The estimator's private continual net.
        X : dict of str to torch.Tensor
            The batch's inputs: ``"X"``, ``"task_ids"`` and, for weighted
            data, ``"sample_weight"``.
        y : torch.Tensor of shape (n_rows,)
            The batch's encoded labels.

        Returns
        -------
        X : dict of str to torch.Tensor
            The inputs to train on, with the same keys.
        y : torch.Tensor
            Their labels.
        """
        return X, y

    def loss_logits(self, net, X, y_pred, y):
        """Every step: the logits the data loss is computed on (default: ``y_pred``).

        ER-ACE masks the classes absent from the incoming batch here. Only
        the data loss sees the result; :meth:`extra_loss` and the history
        receive the network's own logits.

        Parameters
        ----------
        net : skorch.NeuralNet
            The estimator's private continual net.
        X : dict of str to torch.Tensor
            The batch's inputs, after :meth:`augment_batch`.
        y_pred : torch.Tensor of shape (n_rows, n_classes)
            The logits (after the previous plugins' ``loss_logits``).
        y : torch.Tensor of shape (n_rows,)
            The batch's encoded labels.

        Returns
        -------
        torch.Tensor of shape (n_rows, n_classes)
            The logits the criterion is applied to.
        """
        return y_pred

    def extra_loss(self, net, X, y_pred, y):
        """Every step: a term added to the loss (LwF's distillation), or None.

        Parameters
        ----------
        net : skorch.NeuralNet
            The estimator's private continual net.
        X : dict of str to torch.Tensor
            The batch's inputs, after :meth:`augment_batch`.
        y_pred : torch.Tensor of shape (n_rows, n_classes)
            The network's logits for the batch.
        y : torch.Tensor of shape (n_rows,)
            The batch's encoded labels.

        Returns
        -------
        torch.Tensor or None
            A scalar added to the batch's loss, or None to add nothing.
        """
        return None

    def record_gradients(self, net, params, grads):
        """Every step, after the backward pass: read the data loss's gradients.

        SI's path integral reads them here, before any penalty is added.

        Parameters
        ----------
        net : skorch.NeuralNet
            The estimator's private continual net.
        params : list of torch.Tensor
            The trainable parameters that received a gradient this step.
        grads : list of torch.Tensor
            Their gradients, of the data loss alone.
        """

    def add_penalty_gradients(self, net, params, grads):
        """Every step: add a penalty's gradient to ``grads`` in place (EWC, SI).

        Quadratic penalties are added to the gradient directly, with
        ``torch._foreach_*`` operations, instead of through autograd.

        Parameters
        ----------
        net : skorch.NeuralNet
            The estimator's private continual net.
        params : list of torch.Tensor
            The trainable parameters that received a gradient this step.
        grads : list of torch.Tensor
            Their gradients, changed in place.
        """

    def project_gradients(self, net, params, grads):
        """Every step, after the penalties: change ``grads`` in place (A-GEM's projection).

        Parameters
        ----------
        net : skorch.NeuralNet
            The estimator's private continual net.
        params : list of torch.Tensor
            The trainable parameters that received a gradient this step.
        grads : list of torch.Tensor
            Their gradients, penalties included, changed in place.
        """

    def after_step(self, net, params):
        """Every step, after the optimizer step (SI accumulates its path integral).

        Parameters
        ----------
        net : skorch.NeuralNet
            The estimator's private continual net.
        params : list of torch.Tensor
            The parameters the step updated (those that received a gradient).
        """

    def after_task(self, net, task):
        """After training on ``task``: consolidate (EWC's Fisher, filling a memory).

        Parameters
        ----------
        net : skorch.NeuralNet
            The estimator's private continual net, trained on the task.
        task : Task
            The task just learned, as given (before :meth:`training_data`).
        """

    def prediction_scores(self, net, X, y_pred):
        """At prediction: the class scores (default: the network's logits ``y_pred``).

        ``predict`` takes their argmax and ``predict_proba`` their softmax.
        iCaRL replaces them with the nearest-mean-of-exemplars rule. Not
        called while training (nor for a validation split's loss).

        Parameters
        ----------
        net : skorch.NeuralNet
            The estimator's private continual net (in ``eval()`` mode).
        X : dict of str to torch.Tensor
            The inputs: ``"X"`` and ``"task_ids"``.
        y_pred : torch.Tensor of shape (n_rows, n_classes)
            The logits (after the previous plugins' ``prediction_scores``).

        Returns
        -------
        torch.Tensor of shape (n_rows, n_classes)
            The scores; classes that may not be predicted hold a very
            negative value (``sktransfer.base.MASK_VALUE``).
        """
        return y_pred

    def penalty(self, net):
        """The current value of the strategy's penalty; 0 by default.

        The sum over plugins is recorded in ``history`` as ``train_penalty``
        at every epoch end.

        Parameters
        ----------
        net : skorch.NeuralNet
            The estimator's private continual net.

        Returns
        -------
        float or torch.Tensor
            The penalty's value (a scalar).
        """
        return 0.0

    def rollback_shared(self):
        """Tensors a failed call's rollback may keep by reference instead of copying.

        The estimator snapshots a plugin's state before every ``partial_fit``
        (see ``NeuralEstimatorMixin._rollback``); data that the plugin only ever
        appends or rebinds, never changes in place, need not be copied.
        """
        return ()


class Strategy(BaseEstimator, metaclass=ABCMeta):
    """Base class of continual-learning strategies.

    Subclasses implement ``_build``, which returns a fresh :class:`Plugin`
    holding the strategy's state, and declare one entry of
    ``_parameter_constraints`` per ``__init__`` parameter. :meth:`build`
    validates the parameters against them first (and calls
    ``_check_params``, a hook for rules that involve several parameters).
    """

    _parameter_constraints: dict = {}

    #: Whether the strategy keeps samples of past tasks (a memory); see
    #: :func:`~sktransfer.continual.warn_unsuited_scenario`.
    _keeps_memory = False
    #: Whether the strategy only regularises the weights or outputs (EWC, SI,
    #: MAS, LwF), which does not address the class-incremental scenario alone.
    _regularization_only = False

    def build(self, scenario):
        """A fresh plugin for learning in ``scenario``."""
        self._validate_params()
        self._check_params()
        return self._build(scenario)

    def _check_params(self):
        """Checks beyond ``_parameter_constraints`` (across parameters); none by default."""

    @abstractmethod
    def _build(self, scenario):
        """The plugin that implements this strategy in ``scenario``."""


# Constraints shared by the strategies: finite numbers > 0 and >= 0 (an
# Interval never holds NaN, and these exclude inf), and ints >= 1.
_POSITIVE = Interval(Real, 0, np.inf, closed="neither")
_NON_NEGATIVE = Interval(Real, 0, np.inf, closed="left")
_POSITIVE_INT = Interval(Integral, 1, None, closed="left")


class Naive(Strategy):
    """Plain fine-tuning on each task in turn: the lower bound.

    Nothing protects old tasks; in the class-incremental scenario the network
    forgets everything but the last task (accuracy near ``1 / n_tasks``).

    Examples
    --------
    >>> from sktransfer.continual import ContinualClassifier, Naive
    >>> ContinualClassifier(strategy=Naive())
    ContinualClassifier(strategy=Naive())
    """

    def _build(self, scenario):
        return Plugin()


class _JointPlugin(Plugin):
    def __init__(self):
        self.data = []

    def training_data(self, task):
        self.data.append(task)
        if len(self.data) == 1:
            return task
        return Task(task.index, torch.cat([d.X for d in self.data]),
                    torch.cat([d.y for d in self.data]), torch.cat([d.t for d in self.data]),
                    concat_weights([(len(d), d.w) for d in self.data]))

    def rollback_shared(self):
        # every task's tensors, kept whole and never written to
        return [tensor for task in self.data for tensor in task.tensors()]


class JointTraining(Strategy):
    """Train on the union of every task seen so far: the upper bound.

    At each new task the network continues training on all the data of the
    tasks learned so far together with the new one, so nothing is forgotten
    for lack of data. It keeps every sample, which a continual learner is
    meant not to do: it is a reference, not a method.

    Examples
    --------
    >>> from sktransfer.continual import ContinualClassifier, JointTraining
    >>> ContinualClassifier(strategy=JointTraining())
    ContinualClassifier(strategy=JointTraining())
    """

    _keeps_memory = True

    def _build(self, scenario):
        return _JointPlugin()
