"""Where MAMLClassifier lived before 0.2: kept so that pickles of fitted estimators load."""

from ._maml_classifier import MAMLClassifier
from ._maml_params import MAMLParamsMixin

__all__ = ["MAMLClassifier", "MAMLParamsMixin"]
