"""skorch callbacks for the estimators of the package.

Every estimator takes skorch callbacks in its ``callbacks=`` parameter and
passes them to its private skorch net. This module holds those written for
the package:

* :class:`TimeBudget`: stop training once a wall-clock budget is spent, and
  record in the history how far training got.
"""

import time
from numbers import Real

from skorch.callbacks import Callback

__all__ = ["TimeBudget"]


class TimeBudget(Callback):
    """Stop training once a wall-clock budget is spent.

    The clock starts when a training run begins (``on_train_begin``: one
    ``fit`` or ``partial_fit`` of the estimator, one experience of a
    continual ``fit``) and is read at the end of every batch: for the
    meta-learners a batch is a meta-batch of episodes, so an epoch of many
    episodes is cut short too. Once the budget is spent, training stops the
    way skorch's :class:`~skorch.callbacks.EarlyStopping` stops it (skorch's
    ``fit`` ends normally): the model trained so far is the fitted model, and
    the estimator predicts with it. The stop is not a failure, so nothing is
    rolled back.

    The history's last row records how far training got:
    ``time_budget_stopped`` (whether the budget stopped it),
    ``time_budget_elapsed_s`` (seconds trained) and ``time_budget_batches``
    (batches trained in this run). When the stop cuts an epoch short, that
    row also gets the ``train_loss`` of its batches so far (the mean over
    them, weighted by batch size, as skorch computes it).

    Parameters
    ----------
    minutes : float or None, default=None
        The budget in minutes.
    seconds : float or None, default=None
        The budget in seconds; added to ``minutes`` when both are given. At
        least one of the two must be given, and the total must be positive.

    Attributes
    ----------
    stopped_ : bool
        Whether the budget stopped the last training run.
    elapsed_ : float
        Seconds the last training run took (up to its end or its stop).
    n_batches_ : int
        Batches the last training run trained.
    budget_s_ : float
        The budget in seconds.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.callbacks import TimeBudget
    >>> from sktransfer.meta import PrototypicalClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> budget = TimeBudget(seconds=0.5)
    >>> proto = PrototypicalClassifier(max_epochs=1000, callbacks=[budget], random_state=0)
    >>> proto = proto.fit(X[y < 5] / 16, y[y < 5])
    >>> budget.stopped_, proto.net_.history[-1, "time_budget_stopped"]
    (True, True)
    >>> len(proto.net_.history) < 1000
    True
    """

    def __init__(self, minutes=None, seconds=None):
        self.minutes = minutes
        self.seconds = seconds

    def _budget(self):
        values = {"minutes": self.minutes, "seconds": self.seconds}
        for name, value in values.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, Real)):
                raise TypeError(f"TimeBudget's {name} must be a number or None, "
                                f"got {value!r}")
            if value is not None and not value >= 0:
                raise ValueError(f"TimeBudget's {name} must be >= 0, got {value!r}")
        if self.minutes is None and self.seconds is None:
            raise ValueError("TimeBudget needs a budget: give minutes= or seconds=")
        total = 60.0 * float(self.minutes or 0) + float(self.seconds or 0)
        if not total > 0 or total == float("inf"):
            raise ValueError(f"TimeBudget's budget must be positive and finite, got "
                             f"minutes={self.minutes!r}, seconds={self.seconds!r}")
        return total

    def initialize(self):
        """Check the budget when the net is built.

        Returns
        -------
        TimeBudget
            This callback.
        """
        # skorch initializes the callbacks when the net is built: bad values are
        # an error at the start of fit, before any training
        self.budget_s_ = self._budget()
        return self

    def on_train_begin(self, net, **kwargs):
        """Start the clock.

        Parameters
        ----------
        net : skorch.NeuralNet
            The net being trained.
        **kwargs : dict
            What skorch passes to the hook (unused).
        """
        self.budget_s_ = self._budget()
        self._start = time.perf_counter()
        self.stopped_ = False
        self.elapsed_ = 0.0
        self.n_batches_ = 0

    def on_batch_end(self, net, training=True, **kwargs):
        """Count a training batch and stop training once the budget is spent.

        Parameters
        ----------
        net : skorch.NeuralNet
            The net being trained.
        training : bool, default=True
            Whether the batch was a training batch (validation batches are
            not counted).
        **kwargs : dict
            What skorch passes to the hook (unused).
        """
        if not training:
            return
        self.n_batches_ += 1
        self.elapsed_ = time.perf_counter() - self._start
        if self.elapsed_ >= self.budget_s_:
            self.stopped_ = True
            self._record(net, cut_epoch=True)
            # skorch's fit catches KeyboardInterrupt and ends training normally
            # (how EarlyStopping stops it)
            raise KeyboardInterrupt

    def on_epoch_end(self, net, **kwargs):
        """Record the time and the batches so far in the epoch's history row.

        Parameters
        ----------
        net : skorch.NeuralNet
            The net being trained.
        **kwargs : dict
            What skorch passes to the hook (unused).
        """
        self.elapsed_ = time.perf_counter() - self._start
        self._record(net)

    def on_train_end(self, net, **kwargs):
        """Read the clock at the end of training.

        Parameters
        ----------
        net : skorch.NeuralNet
            The net being trained.
        **kwargs : dict
            What skorch passes to the hook (unused).
        """
        if not self.stopped_ and "_start" in vars(self):
            self.elapsed_ = time.perf_counter() - self._start

    def _record(self, net, cut_epoch=False):
        history = net.history
        if not len(history):
            return
        history.record("time_budget_stopped", bool(self.stopped_))
        history.record("time_budget_elapsed_s", float(self.elapsed_))
        history.record("time_budget_batches", int(self.n_batches_))
        row = history[-1]
        batches = [b for b in row.get("batches", []) if "train_loss" in b]
        if cut_epoch and "train_loss" not in row and batches:
            sizes = [b.get("train_batch_size", 1) for b in batches]
            loss = sum(b["train_loss"] * s for b, s in zip(batches, sizes)) / max(sum(sizes), 1)
            history.record("train_loss", float(loss))

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_start", None)
        return state
