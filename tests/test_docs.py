"""Documentation pages whose code is run as part of the tests.

The developer guide is a doctest page. The user-guide pages show their code
as ``::`` literal blocks; each page's blocks run in order in one namespace,
as a reader would paste them, so a page that no longer works fails here.
"""

import ast
import doctest
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"

#: user-guide pages that do not run here, and why
NOT_RUN = {
    "scaling.rst": "starts process pools (loky, a Dask LocalCluster) and accelerate "
    "launchers; tests/test_scaling.py and tests/test_accelerate.py run those paths",
}
GUIDE_PAGES = sorted(p.name for p in (DOCS / "user_guide").glob("*.rst")
                     if p.name != "index.rst" and p.name not in NOT_RUN)


@pytest.mark.parametrize("page", ["developer_guide.rst"])
def test_page_runs(page):
    result = doctest.testfile(str(DOCS / page), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0, f"{page}: {result.failed} of {result.attempted} examples failed"


def literal_blocks(text):
    """The ``::`` literal blocks of a reStructuredText page, in order, with line numbers."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.rstrip().endswith("::") or line.lstrip().startswith(".."):
            i += 1
            continue
        indent = len(line) - len(line.lstrip())
        j = i + 1
        body = []
        while j < len(lines) and (not lines[j].strip()
                                  or len(lines[j]) - len(lines[j].lstrip()) > indent):
            body.append(lines[j])
            j += 1
        if any(b.strip() for b in body):
            yield i + 2, textwrap.dedent("\n".join(body))
        i = j


@pytest.mark.slow
@pytest.mark.parametrize("page", GUIDE_PAGES)
def test_user_guide_page_runs_top_to_bottom(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # pages save weights files
    path = DOCS / "user_guide" / page
    blocks = list(literal_blocks(path.read_text()))
    assert blocks, f"{page} has no code"
    namespace = {}
    for lineno, code in blocks:
        exec(compile(ast.parse(code), f"{page}, block at line {lineno}", "exec"), namespace)


def test_every_guide_page_runs_or_says_why():
    pages = {p.name for p in (DOCS / "user_guide").glob("*.rst")} - {"index.rst"}
    assert pages == set(GUIDE_PAGES) | set(NOT_RUN)
    assert all(reason.strip() for reason in NOT_RUN.values())
