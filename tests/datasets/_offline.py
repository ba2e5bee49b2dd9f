"""The offline fixture of the loader tests: a private user cache, no network."""

import urllib.error

import pytest

from sktransfer.datasets import _fetch


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Keep the user cache in tmp_path and make any download attempt fail fast."""
    monkeypatch.setenv("SKTRANSFER_CACHE", str(tmp_path / "user_cache"))

    def no_network(url, path, timeout=None):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(_fetch, "_download_url", no_network)
