"""The protocol of task weighting: the :class:`Weighting` configuration and its :class:`Weighter`.

A weighting comes in two parts, like an estimator and its fitted state:

* a :class:`Weighting` is a small scikit-learn-style object (``get_params``
  / ``set_params``) that holds configuration only, so ``GridSearchCV`` can
  search ``weighting`` and its parameters (``weighting__init_log_var``);
* at fit time :meth:`Weighting.build` returns a fresh :class:`Weighter`, an
  ``nn.Module`` that holds the learned or running state. The weighter lives
  in the skorch net's module, so learned weights (uncertainty's
  log-variances) are optimised together with the network and pickled with
  it.

A weighter turns the (T,) per-task mean losses of a batch into the loss the
network descends, and may act at the points of training that its hooks
name. There are three kinds, and the kind decides the training step:

* a plain :class:`Weighter` (``equal``, ``uncertainty``, ``dwa``, ``famo``,
  ...): the net backpropagates the total that :meth:`Weighter.forward`
  returns, with skorch's ordinary step;
* a :class:`GradientWeighter` (``mgda``, ``pcgrad``, ``cagrad``, ...): the
  net computes the gradient of every task and the weighter's
  :meth:`~GradientWeighter.solve` turns their Gramian into weights
  (:func:`sktransfer.multitask._gradient_step.gradient_train_step`);
* a :class:`BackwardWeighter` (``gradnorm``): the weighter's
  :meth:`~BackwardWeighter.backward` sets the gradients itself.
"""

from abc import ABCMeta, abstractmethod

from sklearn.base import BaseEstimator
from torch import nn

__all__ = ["Weighting", "Weighter", "GradientWeighter", "BackwardWeighter"]


class Weighting(BaseEstimator, metaclass=ABCMeta):
    """Base class of task-weighting strategies (configuration only).

    Subclasses implement :meth:`build`, which returns a fresh
    :class:`Weighter` for ``n_tasks`` tasks, and declare one entry of
    ``_parameter_constraints`` per ``__init__`` parameter (the constraint
    objects of :mod:`sklearn.utils._param_validation`): the estimator
    validates them with ``_validate_params()`` before anything is built, so
    a bad value raises ``sklearn.utils._param_validation.InvalidParameterError``
    (a ``ValueError``) that names the parameter and the strategy.

    A strategy is given to an estimator by name (a key of
    :data:`~sktransfer.multitask.WEIGHTINGS`) or as an object:
    ``MultiTaskClassifier(weighting=MyWeighting(alpha=0.5))``.
    """

    _parameter_constraints: dict = {}

    @abstractmethod
    def build(self, n_tasks, task_types=None):
        """A fresh :class:`Weighter` for ``n_tasks`` tasks.

        ``task_types`` lists ``"classification"`` or ``"regression"`` for
        every task (``None``: all classification). Called once per new
        model (``fit``, a first ``partial_fit``), inside the estimator's
        seeded random stream.
        """


class Weighter(nn.Module, metaclass=ABCMeta):
    """Base class of the weighter modules that :meth:`Weighting.build` returns.

    A subclass implements :meth:`forward`; every other hook is a documented
    no-op, so it overrides only those it needs. State that changes during
    training belongs in parameters (optimised with the network) or buffers
    (saved and pickled with it); a weighter should change its state only in
    training mode with gradients enabled (``self.training and
    torch.is_grad_enabled()``), so that the validation loss uses the current
    weights without updating them.

    The net trains a plain weighter with skorch's ordinary step: the loss is
    the total :meth:`forward` returns (plus the architecture's penalty), and
    skorch backpropagates it. :class:`GradientWeighter` and
    :class:`BackwardWeighter` are the two kinds that set the gradients
    themselves.
    """

    #: Whether the training step sets the gradients through the weighter
    #: (:class:`GradientWeighter`, :class:`BackwardWeighter`) instead of
    #: backpropagating :meth:`forward`'s total. Derive one of those two
    #: classes rather than setting it.
    sets_gradients = False

    def __init__(self):
        # no parameters of its own (nn.Module's signature is *args, **kwargs)
        super().__init__()

    @abstractmethod
    def forward(self, losses, present):
        """Combine the per-task losses of one batch: ``(total, weights)``.

        Called by the net for every batch, training and validation (for the
        two kinds that set the gradients, for validation batches only), in
        the module's training or evaluation mode.

        Parameters
        ----------
        losses : torch.Tensor of shape (n_tasks,)
            Each task's mean loss over its labelled rows of the batch
            (weighted by ``sample_weight``); 0 for a task without a label in
            the batch.
        present : torch.Tensor of shape (n_tasks,), dtype bool
            Which tasks have at least one label in the batch.

        Returns
        -------
        total : torch.Tensor, scalar
            The loss the network descends; an absent task must contribute
            nothing.
        weights : torch.Tensor of shape (n_tasks,)
            The weight of every task in ``total`` (0 for an absent task),
            recorded per epoch in the history as ``train_task_weights``.
        """

    def after_step(self, net, batch, **fit_params):
        """After every training step, once the optimizer has stepped (FAMO, GradNorm).

        The losses of the batch under the new weights are
        :func:`sktransfer.multitask._gradient_step.batch_task_losses` ``(net,
        batch, **fit_params)``. Does nothing by default.

        Parameters
        ----------
        net : skorch.NeuralNet
            The estimator's private multi-task net.
        batch : tuple
            The ``(X, y)`` of the step: ``X`` the dict of inputs (``"X"``,
            ``"task_ids"``, ...), ``y`` the encoded targets.
        **fit_params : dict
            The fit parameters skorch passes to the step.
        """

    def epoch_end(self, task_losses):
        """At the end of every training epoch (DWA).

        Does nothing by default.

        Parameters
        ----------
        task_losses : torch.Tensor of shape (n_tasks,)
            The epoch's mean training loss of every task (the batches' task
            losses averaged with their label counts), the value recorded as
            ``train_task_losses``.
        """


class GradientWeighter(Weighter):
    """A weighter that weights the per-task gradients (MGDA, PCGrad, CAGrad, ...).

    The net's training step
    (:func:`~sktransfer.multitask._gradient_step.gradient_train_step`)
    computes the gradient ``g_t`` of every task present in the batch, at
    :attr:`level`, and the update of the shared part is
    ``d = sum_t w_t g_t`` with the weights of :meth:`solve`; the
    task-specific parameters get the ordinary gradient of the sum of the
    task losses. :meth:`forward` (the validation loss) is the plain sum of
    the task losses. A subclass implements :meth:`solve`.
    """

    sets_gradients = True

    #: Where the per-task gradients are taken: ``"parameters"`` (the
    #: architecture's ``shared_parameters()``) or ``"representation"`` (the
    #: output ``Z`` of the architecture's ``trunk``; MGDA-UB).
    level = "parameters"

    #: What error messages call the weighting (the built-in ones: their name
    #: in ``WEIGHTINGS``); None: the class name.
    name = None

    @abstractmethod
    def solve(self, M, losses):
        """The task weights for one training step.

        Parameters
        ----------
        M : ndarray of shape (k, k), float64
            The Gramian ``G G^T`` of the per-task gradients of the ``k``
            tasks present in the batch (in task order).
        losses : ndarray of shape (k,), float64
            Their losses.

        Returns
        -------
        array-like of shape (k,)
            The weight ``w_t`` of every present task's gradient in the
            update ``d = sum_t w_t g_t``.
        """

    def forward(self, losses, present):
        w = present.to(losses.dtype)
        return (w * losses).sum(), w


class BackwardWeighter(Weighter):
    """A weighter that runs the backward pass of a training step itself (GradNorm).

    The net's training step
    (:func:`~sktransfer.multitask._gradient_step.gradient_train_step`)
    forwards the batch, backpropagates the architecture's penalty, and then
    calls :meth:`backward` instead of backpropagating :meth:`forward`'s
    total; the optimizer step follows as usual. A subclass implements
    :meth:`forward` (the validation loss) and :meth:`backward`.
    """

    sets_gradients = True

    @abstractmethod
    def backward(self, losses, present, model):
        """Set the ``.grad`` of the network's parameters (and the weighter's) for one batch.

        Gradients accumulate into ``.grad`` (the architecture's penalty may
        already be there).

        Parameters
        ----------
        losses : torch.Tensor of shape (n_tasks,)
            Each task's mean loss, as in :meth:`Weighter.forward`, with the
            graph of the forward pass.
        present : torch.Tensor of shape (n_tasks,), dtype bool
            Which tasks have at least one label in the batch.
        model : nn.Module
            The architecture's network (``shared_parameters()`` gives the
            parameters all tasks share).

        Returns
        -------
        total : torch.Tensor, scalar
            The batch's loss, detached.
        weights : torch.Tensor of shape (n_tasks,)
            The weight of every task, as in :meth:`Weighter.forward`.
        """
