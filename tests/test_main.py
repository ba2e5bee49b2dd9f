"""The command-line demo runs and prints its table."""

import io

from sktransfer.__main__ import main, multitask_demo


def test_demo_prints_results_table():
    out = io.StringIO()
    search = multitask_demo(quick=True, out=out)
    text = out.getvalue()
    assert "GridSearchCV, 3-fold, 6 settings" in text
    for name in ("digit", "odd", "high", "uncertainty", "conditioned"):
        assert name in text
    assert search.best_score_ > 0.8  # mean per-task accuracy, well above chance


def test_main_rejects_unknown_command(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["train-everything"])
    assert "invalid choice" in capsys.readouterr().err
