"""Elastic weight consolidation (Kirkpatrick et al., 2017) and online EWC.

After each task the diagonal Fisher information ``F_k`` of the network is
computed at the task's solution ``theta_k`` (see
:func:`~sktransfer.continual.fisher_diagonal`), and later tasks are trained
on ``loss + penalty`` with

.. math::

    \\text{penalty}(\\theta) = \\frac{\\lambda}{2} \\sum_k \\sum_i
        F_{k,i}\\, (\\theta_i - \\theta_{k,i})^2

where ``loss`` is the mean cross-entropy of a mini-batch and ``F_k`` the
*mean* over the task's samples of the per-sample Fisher (so ``lambda`` does
not depend on the size of a task). The sum over past tasks is kept collapsed
as two running tensors, ``A = sum_k F_k`` and ``B = sum_k F_k theta_k``
(plus the scalar ``C = sum_k F_k theta_k^2``), since

.. math::

    \\sum_k F_k (\\theta - \\theta_k)^2 = A\\theta^2 - 2B\\theta + C,

so a training step costs the same after 2 or 50 tasks. Its gradient,
``lambda * (A * theta - B)``, is added to the parameters' gradients with
``torch._foreach_*`` operations.

Online EWC (Schwarz et al., 2018; van de Ven et al.) keeps one running
Fisher ``F~ <- gamma F~ + F_k`` anchored at the latest solution only:
``A = F~``, ``B = F~ theta_k``.
"""

from numbers import Integral, Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions

from ..base import parameter_constraints
from ._base import SCENARIOS, BaseContinualClassifier
from ._fisher import FISHER_KINDS, fisher_diagonal
from ._strategies import _NON_NEGATIVE, _POSITIVE_INT, Plugin, Strategy

__all__ = ["EWC", "EWCContinualClassifier"]


def _subsample(task, n_samples):
    if n_samples is None or n_samples >= len(task):
        return task.X, task.y, task.t
    idx = torch.randperm(len(task))[:n_samples]
    return task.X[idx], task.y[idx], task.t[idx]


def _aligned(store, net):
    """Per-parameter list (net.params order) of the tensors in ``store``."""
    return [store[n] if n in store else torch.zeros_like(p.detach())
            for n, p in zip(net.param_names, net.params)]


class _EWCPlugin(Plugin):
    def __init__(self, ewc_lambda, fisher, gamma, fisher_n_samples):
        self.ewc_lambda = float(ewc_lambda)
        self.fisher = fisher
        self.gamma = gamma
        self.fisher_n_samples = fisher_n_samples
        self.A, self.B, self.C = {}, {}, 0.0
        self.online_fisher = {}
        self._A = self._B = None
        self.n_consolidated = 0

    def before_task(self, net, task):
        self._A = _aligned(self.A, net)
        self._B = _aligned(self.B, net)

    def add_penalty_gradients(self, net, params, grads):
        if not self.n_consolidated or self.ewc_lambda == 0:
            return
        tmp = torch._foreach_mul(params, net.select(self._A))
        torch._foreach_sub_(tmp, net.select(self._B))
        torch._foreach_add_(grads, tmp, alpha=self.ewc_lambda)

    def penalty(self, net):
        if not self.n_consolidated:
            return 0.0
        total = float(self.C)
        for name, p in zip(net.param_names, net.params):
            if name in self.A:
                p = p.detach()
                total += float((self.A[name] * p * p - 2 * self.B[name] * p).sum())
        return 0.5 * self.ewc_lambda * max(total, 0.0)

    def importance(self, net, task):
        """The per-parameter importance of ``task`` ({name: tensor}): the diagonal Fisher.

        Subclasses with another importance (MAS) override this and share the
        quadratic penalty.
        """
        X, y, t = _subsample(task, self.fisher_n_samples)
        device = net.training_device()
        batch = net.batch_size if self.fisher == "batched" and net.batch_size > 0 else 256
        return fisher_diagonal(net.module_, X.to(device), y.to(device), kind=self.fisher,
                               batch_size=batch, forward_kwargs={"task_ids": t.to(device)},
                               random_state=int(torch.randint(1 << 30, ())))

    def after_task(self, net, task):
        fisher = self.importance(net, task)
        for name, p in zip(net.param_names, net.params):
            F = fisher[name].detach()
            theta = p.detach().clone()
            if self.gamma is None:
                self.A[name] = self.A[name] + F if name in self.A else F.clone()
                self.B[name] = self.B[name] + F * theta if name in self.B else F * theta
            else:
                old = self.online_fisher.get(name)
                F = F if old is None else self.gamma * old + F
                self.online_fisher[name] = F
                self.A[name] = F
                self.B[name] = F * theta
        if self.gamma is None:
            self.C = float(self.C) + sum(float((fisher[n] * p.detach() ** 2).sum())
                                         for n, p in zip(net.param_names, net.params))
        else:
            self.C = sum(float((self.online_fisher[n] * p.detach() ** 2).sum())
                         for n, p in zip(net.param_names, net.params))
        self.n_consolidated += 1
        self.before_task(net, task)


class EWC(Strategy):
    """Elastic weight consolidation: a quadratic penalty weighted by the Fisher.

    The training loss of a later task is ``mean cross-entropy + penalty`` with
    ``penalty = ewc_lambda / 2 * sum_k sum_i F_k,i (theta_i - theta_k,i)^2``,
    ``F_k`` the diagonal Fisher of task ``k`` (a mean over samples) at its
    solution ``theta_k``. Because ``F`` is a mean, ``ewc_lambda`` is the
    weight of the penalty relative to a *mean* loss: it plays the role of the
    number of samples in the Bayesian reading of EWC, and useful values are
    large (``1e2``-``1e4`` for MLPs on MNIST-like data).

    Parameters
    ----------
    ewc_lambda : float, default=100.0
        Penalty strength (see above; note the factor 1/2).
    fisher : {"exact", "sampled", "empirical", "batched"}, default="exact"
        Which Fisher (see :func:`~sktransfer.continual.fisher_diagonal`).
        ``"batched"`` squares mini-batch mean gradients as most libraries do;
        it is about ``batch_size`` times too small and is offered only for
        comparison.
    gamma : float or None, default=None
        ``None``: EWC, one penalty per past task (kept collapsed). A number in
        (0, 1]: online EWC, a single running Fisher ``F <- gamma F + F_k``
        anchored at the latest solution.
    fisher_n_samples : int or None, default=None
        Estimate the Fisher on at most this many samples of the task (a
        random subset); ``None`` uses them all.

    Examples
    --------
    >>> from sktransfer.continual import EWC, ContinualClassifier
    >>> clf = ContinualClassifier(strategy=EWC(ewc_lambda=1000.0))
    >>> clf.set_params(strategy__ewc_lambda=10.0).strategy
    EWC(ewc_lambda=10.0)
    """

    _parameter_constraints: dict = {
        "ewc_lambda": [_NON_NEGATIVE],
        "fisher": [StrOptions(set(FISHER_KINDS))],
        "gamma": [Interval(Real, 0, 1, closed="right"), None],
        "fisher_n_samples": [_POSITIVE_INT, None],
    }
    _regularization_only = True

    def __init__(self, ewc_lambda=100.0, fisher="exact", gamma=None, fisher_n_samples=None):
        self.ewc_lambda = ewc_lambda
        self.fisher = fisher
        self.gamma = gamma
        self.fisher_n_samples = fisher_n_samples

    def _build(self, scenario):
        gamma = None if self.gamma is None else float(self.gamma)
        n_samples = None if self.fisher_n_samples is None else int(self.fisher_n_samples)
        return _EWCPlugin(self.ewc_lambda, self.fisher, gamma, n_samples)


@parameter_constraints(
    **EWC._parameter_constraints,
    memory_size=[Interval(Integral, 0, None, closed="left")],
    scenario=[StrOptions(set(SCENARIOS))],
)
class EWCContinualClassifier(BaseContinualClassifier):
    """Continual classifier trained with elastic weight consolidation (EWC).

    Learns tasks one after another (:meth:`partial_fit` per task, or
    :meth:`fit` with ``task_ids``); after each task it computes the diagonal
    Fisher information at the task's solution and penalises later changes of
    the weights that mattered:

    ``loss = mean cross-entropy + ewc_lambda / 2 * sum_k sum_i F_k,i
    (theta_i - theta_k,i)^2``

    with ``F_k`` a *mean* over the task's samples of the per-sample Fisher
    (computed in ``eval()`` mode from per-sample gradients). The sum over
    past tasks is kept as two running tensors, so a step costs the same
    after 2 or 50 tasks. With ``gamma`` set this is online EWC. With
    ``memory_size > 0`` the penalty is combined with experience replay.

    Parameters
    ----------
    ewc_lambda : float, default=100.0
        Penalty strength (relative to a mean loss; note the factor 1/2).
    fisher : {"exact", "sampled", "empirical", "batched"}, default="exact"
        Which Fisher (see :func:`~sktransfer.continual.fisher_diagonal`);
        ``"batched"`` is biased (about ``batch_size`` times too small) and is
        there only for comparison with other libraries.
    gamma : float or None, default=None
        ``None`` for EWC; a decay in (0, 1] for online EWC.
    fisher_n_samples : int or None, default=None
        Samples of each task used for its Fisher (``None``: all).
    memory_size : int, default=0
        Size of a reservoir replay memory combined with EWC (0: no replay).
    scenario : {"task", "domain", "class"}, default="class"
        ``"task"``: one head per task, ``task_ids`` needed at prediction.
        ``"domain"``: one head over every class. ``"class"``: one head, the
        classes not seen yet are masked out.
    class_weight : None, "balanced" or dict, default=None
        Weights of the classes in the loss (multiplied with ``sample_weight``):
        ``"balanced"`` weighs each class by ``n_samples / (n_classes *
        count)`` over the labels given to ``fit`` (as scikit-learn's
        ``compute_class_weight``); a dict from label to weight (labels not in
        it weigh 1). ``partial_fit`` takes a dict only.
    module : None, nn.Module class, factory or instance, default=None
        The trunk (default: an MLP with ``hidden_layer_sizes``, or Conv4 for
        images); a linear head is put on top.
    hidden_layer_sizes : tuple of int, default=(100,)
    optimizer : torch optimizer class, default=torch.optim.Adam
        Re-initialised at the start of every task.
    lr : float, default=1e-3
    max_epochs : int, default=5
        Epochs per task.
    batch_size : int, default=64
    callbacks, train_split
        See :class:`~sktransfer.base.NeuralEstimatorMixin`.
    early_stopping, validation_fraction, n_iter_no_change, tol
        Default ``False, 0.1, 10, 1e-4``: early stopping as in scikit-learn's
        ``MLPClassifier`` on each task;
        see :class:`~sktransfer.base.NeuralEstimatorMixin`.
    device, random_state, verbose, net_params
        See :class:`~sktransfer.base.NeuralEstimatorMixin`.
    precision : {"fp32", "bf16"}, default="fp32"
        ``"bf16"``: bfloat16 mixed precision.
    accelerator : None or accelerate.Accelerator, default=None
        Train through Hugging Face Accelerate, data parallel under a
        launcher. Both: see :class:`~sktransfer.base.NeuralEstimatorMixin`.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained net; ``net_.history`` spans all tasks and records
        ``train_penalty`` per epoch.
    classes_ : ndarray
        Every label of the sequence (``classes`` of the first
        :meth:`partial_fit`).
    tasks_ : list
        Task ids in the order they were first learned.
    n_tasks_ : int
    task_classes_ : list of ndarray
        The labels seen in each task.
    scenario_ : str
    accuracy_matrix_ : ndarray of shape (n_tasks, n_tasks)
        Set by :meth:`fit` with ``eval_tasks``: ``R[i, j]``, the accuracy on
        task ``j`` after learning task ``i``.
    n_features_in_ : int
    input_shape_ : tuple

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.continual import EWCContinualClassifier
    >>> from sktransfer.datasets import make_permuted_tasks
    >>> X, y = load_digits(return_X_y=True)
    >>> Xs, ys, t = make_permuted_tasks(X / 16, y, n_tasks=2, random_state=0)
    >>> clf = EWCContinualClassifier(ewc_lambda=1000.0, scenario="domain", max_epochs=3,
    ...                              random_state=0)
    >>> clf = clf.fit(Xs, ys, task_ids=t)
    >>> clf.n_tasks_, clf.score(Xs[t == 0], ys[t == 0]) > 0.5
    (2, True)
    """

    def __init__(
        self,
        ewc_lambda=100.0,
        fisher="exact",
        gamma=None,
        fisher_n_samples=None,
        memory_size=0,
        scenario="class",
        class_weight=None,
        module=None,
        hidden_layer_sizes=(100,),
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=5,
        batch_size=64,
        callbacks=None,
        train_split=None,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        device="cpu",
        random_state=None,
        verbose=0,
        net_params=None,
        precision="fp32",
        accelerator=None,
    ):
        self.ewc_lambda = ewc_lambda
        self.fisher = fisher
        self.gamma = gamma
        self.fisher_n_samples = fisher_n_samples
        self.memory_size = memory_size
        self.scenario = scenario
        self.class_weight = class_weight
        self.module = module
        self.hidden_layer_sizes = hidden_layer_sizes
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.callbacks = callbacks
        self.train_split = train_split
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.net_params = net_params
        self.precision = precision
        self.accelerator = accelerator

    def _get_strategies(self):
        from ._replay import Replay

        strategies = [EWC(ewc_lambda=self.ewc_lambda, fisher=self.fisher, gamma=self.gamma,
                          fisher_n_samples=self.fisher_n_samples)]
        if self.memory_size:
            strategies.append(Replay(memory_size=self.memory_size))
        return strategies


