"""ContinualClassifier: one estimator for every continual-learning strategy."""

import torch
from sklearn.utils._param_validation import StrOptions

from ..base import parameter_constraints
from ._agem import AGEM
from ._base import SCENARIOS, BaseContinualClassifier
from ._der import DER, DERPlusPlus
from ._er_ace import ERACE
from ._ewc import EWC
from ._gdumb import GDumb
from ._gem import GEM
from ._icarl import ICaRL
from ._lwf import LwF
from ._mas import MAS
from ._replay import Replay
from ._si import SynapticIntelligence
from ._strategies import JointTraining, Naive, Strategy

__all__ = ["ContinualClassifier", "STRATEGIES", "get_strategies"]

#: Strategy names accepted by ``ContinualClassifier(strategy=...)``.
STRATEGIES = {
    "naive": Naive,
    "joint": JointTraining,
    "ewc": EWC,
    "online_ewc": lambda: EWC(gamma=1.0),
    "si": SynapticIntelligence,
    "lwf": LwF,
    "replay": Replay,
    "agem": AGEM,
    "gem": GEM,
    "mas": MAS,
    "der": DER,
    "derpp": DERPlusPlus,
    "er_ace": ERACE,
    "gdumb": GDumb,
    "icarl": ICaRL,
}


def get_strategies(strategy):
    """Resolve a name, a :class:`Strategy` or a list of them to a list of strategies.

    Each strategy's parameters are validated against its
    ``_parameter_constraints``; a bad value raises
    ``sklearn.utils._param_validation.InvalidParameterError`` (a
    ``ValueError``) naming the parameter and the strategy.
    """
    items = list(strategy) if isinstance(strategy, (list, tuple)) else [strategy]
    if not items:
        raise ValueError("strategy must not be an empty list; use 'naive' for plain "
                         "fine-tuning")
    out = []
    for item in items:
        if isinstance(item, Strategy):
            out.append(item)
        elif isinstance(item, str) and item in STRATEGIES:
            out.append(STRATEGIES[item]())
        else:
            raise ValueError(
                f"unknown strategy {item!r}; valid names are {sorted(STRATEGIES)}, or pass "
                "a sktransfer.continual.Strategy instance (or a list of them to combine)"
            )
        out[-1]._validate_params()
    return out


@parameter_constraints(
    strategy=[StrOptions(set(STRATEGIES)), Strategy, list, tuple],
    scenario=[StrOptions(set(SCENARIOS))],
)
class ContinualClassifier(BaseContinualClassifier):
    """Learn classification tasks one after another with a continual strategy.

    :meth:`partial_fit` learns one task (experience) and consolidates;
    :meth:`fit` resets and learns the tasks of ``task_ids`` in order (so
    ``Pipeline`` and ``GridSearchCV`` work, e.g. over ``strategy`` or
    ``strategy__ewc_lambda``); ``fit(..., eval_tasks=...)`` records the
    accuracy matrix.

    Parameters
    ----------
    strategy : str, Strategy or list, default="naive"
        ``"naive"`` (fine-tuning, the lower bound), ``"joint"`` (training on
        all data seen so far, the upper bound), ``"ewc"``, ``"online_ewc"``,
        ``"si"``, ``"mas"``, ``"lwf"``, ``"replay"``, ``"agem"``, ``"gem"``,
        ``"der"``, ``"derpp"``, ``"er_ace"``, ``"gdumb"``, ``"icarl"``, a
        strategy object (:class:`EWC`, :class:`SynapticIntelligence`,
        :class:`MAS`, :class:`LwF`, :class:`Replay`, :class:`AGEM`,
        :class:`GEM`, :class:`DER`, :class:`DERPlusPlus`, :class:`ERACE`,
        :class:`GDumb`, :class:`ICaRL`, :class:`Naive`,
        :class:`JointTraining`) whose parameters are searchable as
        ``strategy__<name>``, or a list of them applied together (e.g.
        ``[EWC(), Replay()]``). In the ``"class"`` scenario, regularisation
        strategies without a memory (EWC, online EWC, SI, MAS, LwF) raise a
        ``UserWarning``: they do not address it alone.
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
        The trained net; ``net_.history`` spans all tasks.
    classes_ : ndarray
    tasks_ : list
        Task ids in the order they were first learned.
    n_tasks_ : int
    task_classes_ : list of ndarray
    scenario_ : str
    accuracy_matrix_ : ndarray of shape (n_tasks, n_tasks)
        Set by :meth:`fit` with ``eval_tasks``.
    n_features_in_ : int
    input_shape_ : tuple

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.continual import ContinualClassifier
    >>> from sktransfer.datasets import make_split_tasks
    >>> X, y = load_digits(return_X_y=True)
    >>> Xs, ys, t = make_split_tasks(X / 16, y, n_tasks=5)
    >>> clf = ContinualClassifier(strategy="replay", max_epochs=5, lr=0.01, random_state=0)
    >>> clf = clf.fit(Xs, ys, task_ids=t)
    >>> clf.n_tasks_, clf.score(Xs, ys) > 0.5
    (5, True)
    """

    def __init__(
        self,
        strategy="naive",
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
        self.strategy = strategy
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
        return get_strategies(self.strategy)
