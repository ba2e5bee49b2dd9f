"""scikit-learn's estimator checks over every public estimator."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sktransfer import MultiTaskClassifier, MultiTaskRegressor
from sktransfer.continual import (
    ContinualClassifier,
    EWCContinualClassifier,
    ProgressiveNetworkClassifier,
)
from sktransfer.meta import (
    BaselineFewShotClassifier,
    BlackBoxMetaClassifier,
    MAMLClassifier,
    MAMLRegressor,
    MatchingClassifier,
    PrototypicalClassifier,
    RelationClassifier,
    ReptileClassifier,
)
from sktransfer.transfer import FineTuner, FineTunerRegressor, PretrainedFeatures


def _tiny_source():
    """A pretrained-network factory for the checks (LazyLinear: any feature count)."""
    from torch import nn

    return nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.Linear(16, 3))


ESTIMATORS = [
    FineTuner(_tiny_source, strategy="full", lr=0.02, max_epochs=40, random_state=0),
    FineTuner(_tiny_source, strategy="lp_ft", lr=0.02, max_epochs=10, random_state=0),
    FineTunerRegressor(_tiny_source, strategy="full", lr=0.02, max_epochs=40, random_state=0),
    PretrainedFeatures(_tiny_source, random_state=0),
    MultiTaskClassifier(hidden_layer_sizes=(16,), max_epochs=40, lr=0.02, batch_size=32,
                        random_state=0),
    MultiTaskRegressor(hidden_layer_sizes=(16,), max_epochs=40, lr=0.02, batch_size=32,
                       random_state=0),
    MAMLClassifier(hidden_layer_sizes=(16,), max_epochs=3, episodes_per_epoch=20,
                   inner_lr=0.5, inner_steps_test=5, lr=0.01, random_state=0),
    PrototypicalClassifier(hidden_layer_sizes=(16,), max_epochs=2, episodes_per_epoch=20,
                           lr=0.01, random_state=0),
    MatchingClassifier(hidden_layer_sizes=(16,), max_epochs=2, episodes_per_epoch=20,
                       lr=0.01, random_state=0),
    RelationClassifier(hidden_layer_sizes=(16,), max_epochs=3, episodes_per_epoch=20,
                       lr=0.01, random_state=0),
    BlackBoxMetaClassifier(d_model=16, n_layers=1, hidden_layer_sizes=(16,), max_epochs=2,
                           episodes_per_epoch=20, lr=0.01, random_state=0),
    BaselineFewShotClassifier(hidden_layer_sizes=(16,), max_epochs=20, lr=0.02,
                              adapt_steps=20, random_state=0),
    ReptileClassifier(hidden_layer_sizes=(16,), max_epochs=3, episodes_per_epoch=20,
                      inner_lr=0.3, random_state=0),
    MAMLRegressor(hidden_layer_sizes=(16,), max_epochs=10, episodes_per_epoch=40,
                  batch_size=8, lr=0.01, inner_steps_test=5, random_state=0),
    EWCContinualClassifier(hidden_layer_sizes=(16,), max_epochs=40, lr=0.02, batch_size=32,
                           random_state=0),
    ContinualClassifier(strategy="replay", hidden_layer_sizes=(16,), max_epochs=40, lr=0.02,
                        batch_size=32, random_state=0),
    ProgressiveNetworkClassifier(hidden_layer_sizes=(16,), max_epochs=40, lr=0.02,
                                 batch_size=32, random_state=0),
]

# check name -> reason, for checks that are expected to fail.
EXPECTED_FAILED = {}
EXPECTED_FAILED["MultiTaskRegressor"] = {
    "check_methods_subset_invariance": "float32 network outputs depend on which rows share a "
    "batch (BLAS blocking): predictions on a subset agree to about 1e-5, not the check's 1e-7",
}
EXPECTED_FAILED["ProgressiveNetworkClassifier"] = {
    "check_n_features_in_after_fitting": "task scenario only: a first partial_fit needs task_id",
    "check_estimators_partial_fit_n_features": "task scenario only: a first partial_fit needs "
    "task_id",
}


# Weighted rows and repeated rows give the same loss, but summed in another order:
# in float32 the fitted models agree to about 2e-7 (tests/test_sample_weight.py checks
# the equivalence to 1e-4), not to the check's relative tolerance of 1e-7.
_FLOAT32_WEIGHTS = ("float32 sums: a weighted mean and the mean over repeated rows agree to "
                    "about 2e-7, not the check's rtol of 1e-7 (see tests/test_sample_weight.py)")
for _name in ("FineTunerRegressor", "MultiTaskClassifier", "MultiTaskRegressor",
              "BaselineFewShotClassifier", "EWCContinualClassifier", "ContinualClassifier",
              "ProgressiveNetworkClassifier"):
    EXPECTED_FAILED.setdefault(_name, {})[
        "check_sample_weight_equivalence_on_dense_data"] = _FLOAT32_WEIGHTS


def _expected(estimator):
    expected = dict(EXPECTED_FAILED.get(type(estimator).__name__, {}))
    if type(estimator).__name__ == "FineTuner":
        expected["check_sample_weight_equivalence_on_dense_data"] = (
            _FLOAT32_WEIGHTS if estimator.strategy == "full" else
            "the L-BFGS linear probe of 'lp_ft' stops at its tolerance, so weighted and "
            "repeated rows reach heads that agree to about 1e-2")
    return expected


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_expected_failures_have_reasons():
    for name, checks in EXPECTED_FAILED.items():
        for check, reason in checks.items():
            assert reason.strip(), f"{name}.{check} is listed without a reason"
