"""Where the tests find the real data sets, and the marker that skips without them.

``SKTRANSFER_DATA`` points at the folder of the real data (``omniglot/``,
``mnist/``; see the data folder's README). Tests on Omniglot carry
:data:`needs_omniglot`, so that a checkout without the files skips them with
one clear reason.
"""

import os

import pytest

__all__ = ["DATA", "HAS_OMNIGLOT", "needs_omniglot"]

#: The data folder (``$SKTRANSFER_DATA``), or None when it is not set.
DATA = os.environ.get("SKTRANSFER_DATA")
#: Whether the Omniglot files are under :data:`DATA`.
HAS_OMNIGLOT = bool(DATA) and os.path.isdir(os.path.join(DATA, "omniglot"))
#: Skips a test when the Omniglot files are absent.
needs_omniglot = pytest.mark.skipif(
    not HAS_OMNIGLOT, reason="needs the Omniglot files: set SKTRANSFER_DATA to the data folder")
