"""MAMLClassifier: model-agnostic meta-learning (Finn et al., 2017) and its variants."""

import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from ..base import NeuralEstimatorMixin, parameter_constraints
from ._augmentation import AUGMENT_CONSTRAINT
from ._base import META_PARAMETER_CONSTRAINTS, FewShotClassifierMixin
from ._maml_params import MAMLParamsMixin

__all__ = ["MAMLClassifier"]


@parameter_constraints(**META_PARAMETER_CONSTRAINTS, augment=AUGMENT_CONSTRAINT)
class MAMLClassifier(MAMLParamsMixin, FewShotClassifierMixin, NeuralEstimatorMixin,
                     ClassifierMixin, BaseEstimator):
    """Model-agnostic meta-learning for few-shot classification.

    ``fit`` meta-trains an initialisation of the network (a trunk and an
    ``n_way``-output linear head) such that ``inner_steps`` gradient steps on
    the K-shot support set of a new N-way task classify its query set well
    (Finn, Abbeel & Levine, 2017). Each meta-iteration draws ``batch_size``
    episodes, adapts to each support set in an inner loop that is a pure
    function of the parameters (:func:`torch.func.functional_call`; the
    model is never copied), and steps ``optimizer`` on the query loss of the
    adapted parameters.

    Variants: first-order MAML (``first_order=True``), Meta-SGD (a learned
    inner rate per parameter, ``learn_inner_lr=True``; Li et al., 2017), ANIL
    (only the head adapts, ``adapt_layers="head"``; Raghu et al., 2020), a
    learned update rule (``inner_optimizer="meta_lstm"``, after Ravi &
    Larochelle, 2017; see :class:`~sktransfer.meta.MetaLSTMUpdate`), and
    more inner steps at test time (``inner_steps_test``).

    After ``fit``, ``predict`` classifies among the classes of ``fit``: the
    meta-model is adapted (``inner_steps_test`` steps) to a support set of up
    to 20 training rows per class (at most about 1000 in all); when there
    are more or fewer classes than ``n_way``, every head row starts from the
    mean of the meta-learned rows. :meth:`adapt` returns a copy adapted to a
    new N-way support set.

    Parameters
    ----------
    n_way : int or None, default=None
        Classes per training episode; ``None`` uses ``min(5, n)`` where ``n``
        counts the classes with more than ``k_shot`` examples. :meth:`adapt`
        needs support sets of exactly ``n_way_`` classes.
    k_shot : int, default=1
        Support examples per class in training episodes.
    n_query : int or None, default=None
        Query examples per class in training episodes; ``None`` uses up to 5,
        as many as the ``n_way``-th largest class allows.
    episodes_per_epoch : int, default=100
        Episodes per skorch epoch; ``max_epochs * episodes_per_epoch /
        batch_size`` meta-iterations in all.
    inner_lr : float, default=0.4
        Step size of the inner loop (the initial value with ``learn_inner_lr``).
    inner_steps : int, default=1
        Inner gradient steps during meta-training.
    inner_steps_test : int or None, default=None
        Inner steps when adapting after training; ``None`` uses ``inner_steps``.
    first_order : bool, default=False
        Drop the second-order terms of the meta-gradient (FOMAML).
    learn_inner_lr : bool, default=False
        Meta-learn one inner step size per parameter entry (Meta-SGD).
    adapt_layers : "all", "head" or list of str, default="all"
        Parameters adapted in the inner loop: all, the head only (ANIL), or
        those whose names start with one of the given prefixes (names start
        with ``trunk.`` or ``head.``).
    inner_optimizer : {"sgd", "meta_lstm"} or InnerUpdate subclass, default="sgd"
        The inner update: gradient descent (:class:`~sktransfer.meta.SGDUpdate`,
        or :class:`~sktransfer.meta.MetaSGDUpdate` with ``learn_inner_lr``),
        ``"meta_lstm"`` (:class:`~sktransfer.meta.MetaLSTMUpdate`, which
        meta-learns the update rule itself), or a subclass of
        :class:`~sktransfer.meta.InnerUpdate`, built at ``fit`` with its
        ``build(params, inner_lr)``.
    task_batching : {"auto", "vmap", "loop"}, default="auto"
        How a meta-batch is processed: all tasks at once with
        :func:`torch.func.vmap`, or one task at a time (less memory; works
        with any module). ``"auto"`` picks by device and task size (see
        :func:`~sktransfer.meta.choose_task_batching`) and uses the loop when
        one vmapped step on a dummy task fails on the module (tried when
        ``fit`` builds the model). Both give the same gradients.
    compile_step : bool, default=False
        Compile the per-task first-order step with :func:`torch.compile`
        (needs ``first_order=True``, a fixed inner rate and a network of
        plain layers; the second-order meta-gradient cannot be compiled).
        The first meta-iteration pays the compilation; for its cost and the
        speed of the compiled step, see the Benchmarks page
        (:ref:`benchmarks_meta`).
    module : None, nn.Module class, factory or instance, default=None
        The trunk (embedding network); a linear head is added. ``None``: an
        MLP with ``hidden_layer_sizes`` for 2-D X, a
        :class:`~sktransfer.modules.Conv4` (batch statistics at test time,
        no running statistics) for images (n, C, H, W).
    hidden_layer_sizes : tuple of int, default=(64,)
    optimizer : torch optimizer class, default=torch.optim.Adam
        The outer (meta) optimizer.
    lr : float, default=1e-3
        The outer (meta) learning rate.
    max_epochs : int, default=10
    batch_size : int, default=4
        Tasks per meta-iteration (the meta-batch).
    callbacks, train_split, device, random_state, verbose, net_params
        See :class:`~sktransfer.base.NeuralEstimatorMixin`. ``train_split``
        holds out a share of each epoch's episodes (drawn from the same
        classes) to record ``valid_loss``.

    augment : {None, "shift"} or callable, default=None
        Training-time augmentation of the images of meta-training episodes
        (support and query); ``"shift"`` is :class:`~sktransfer.meta.RandomShift`
        ``()``, a callable maps a tensor (n, C, H, W) to one of the same shape.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        ``net_.module_.learner`` is the meta-learned network;
        ``net_.history`` has ``train_loss`` (query loss) and ``train_acc``.
    classes_ : ndarray
        Classes of ``fit``, or of the support set after :meth:`adapt`.
    n_way_, n_query_ : int
        The episode shape used in training.
    task_batching_ : str
        The path used, ``"vmap"`` or ``"loop"``; ``task_batching_reason_``
        says why.
    adapted_state_ : dict of str to Tensor
        The adapted parameters ``predict`` uses.
    n_features_in_ : int
    input_shape_ : tuple

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.meta import MAMLClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> maml = MAMLClassifier(n_way=3, k_shot=5, inner_lr=0.5, max_epochs=3,
    ...                       random_state=0).fit(X[y < 7], y[y < 7])
    >>> new = maml.adapt(X[y >= 7][:30], y[y >= 7][:30])
    >>> new.classes_.tolist()
    [7, 8, 9]
    """

    _fixed_way = True

    def __init__(
        self,
        n_way=None,
        k_shot=1,
        n_query=None,
        episodes_per_epoch=100,
        inner_lr=0.4,
        inner_steps=1,
        inner_steps_test=None,
        first_order=False,
        learn_inner_lr=False,
        adapt_layers="all",
        inner_optimizer="sgd",
        task_batching="auto",
        compile_step=False,
        module=None,
        hidden_layer_sizes=(64,),
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=10,
        batch_size=4,
        callbacks=None,
        train_split=None,
        device="cpu",
        random_state=None,
        verbose=0,
        net_params=None,
        augment=None,
    ):
        self.n_way = n_way
        self.k_shot = k_shot
        self.n_query = n_query
        self.episodes_per_epoch = episodes_per_epoch
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.inner_steps_test = inner_steps_test
        self.first_order = first_order
        self.learn_inner_lr = learn_inner_lr
        self.adapt_layers = adapt_layers
        self.inner_optimizer = inner_optimizer
        self.task_batching = task_batching
        self.compile_step = compile_step
        self.module = module
        self.hidden_layer_sizes = hidden_layer_sizes
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.callbacks = callbacks
        self.train_split = train_split
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.net_params = net_params
        self.augment = augment

    def _build_module(self, sample_shape, sizes, n_way, *, k_shot, n_query, device):
        return self._maml_module(sample_shape, sizes, n_way, n_way * k_shot, n_way * n_query,
                                 device, "classification")
