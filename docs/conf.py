"""Sphinx configuration of the sktransfer documentation.

Builds offline: no intersphinx, no remote resources. Build with::

    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

import os
import sys

# Document the package from this source tree even when it is not installed.
sys.path.insert(0, os.path.abspath(".."))
os.environ.setdefault("SKTRANSFER_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import sktransfer

project = "sktransfer"
author = "The sktransfer developers"
copyright = "the sktransfer developers"
release = sktransfer.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "gen_modules/backreferences", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip", "sg_execution_times.rst",
                    "auto_examples/sg_execution_times.rst"]
root_doc = "index"
default_role = "literal"

# -- autodoc / autosummary ----------------------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True}
autodoc_typehints = "none"
autoclass_content = "class"

# -- numpydoc -----------------------------------------------------------------
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
# Checked on every public object the API pages document: the parameters
# (all documented, none unknown, in signature order, each description a
# sentence), the summary line, the Returns / Yields sections and See Also.
# Not checked: extended summaries, examples and See Also on every method, and
# descriptions of self-explanatory parameters (PR07 / PR08 / RT03 / ES01 /
# EX01 / SA01), which the class docstrings carry instead.
numpydoc_validation_checks = {"PR01", "PR02", "PR03", "PR06", "PR10", "SS01", "SS02", "SS03",
                              "GL02", "GL03", "GL08", "RT02", "YD01", "SA02", "SA03"}
# Methods that implement a documented hook of their base class (the hook's
# docstring there says what they do) and skorch callback methods.
numpydoc_validation_exclude = {
    r"\.forward$", r"\.extra_repr$", r"\.build$", r"\.n_open$", r"\.probes_head$",
    r"transfer\.(?!TransferStrategy\.)\w+\.(prepare_network|trainable_parameters|finish_call)$",
    r"meta\.(?!Adaptation\.)\w+\.(init_head|loss)$",
    r"(multitask\.TaskAffinity|callbacks\.TimeBudget)\.(initialize|on_\w+)$",
    r"estimator_checks\.FailingCallback\.",
    # Class attributes documented by ``#:`` comments: numpydoc validates the
    # docstring of the attribute's value (``str``, ``bool``, ``None``), not the
    # comment, so there is nothing of ours to fix.
    r"multitask\.\w*Weighter\.sets_gradients$", r"multitask\.GradientWeighter\.(level|name)$",
    # Inherited from scikit-learn unchanged (ClassNamePrefixFeaturesOutMixin,
    # LeaveOneGroupOut): the docstrings are scikit-learn's.
    r"transfer\.PretrainedFeatures\.get_feature_names_out$",
    r"model_selection\.LeaveOneTaskOut\.get_n_splits$",
}
numpydoc_xref_param_type = False

# -- sphinx-gallery -----------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 1,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "first_notebook_cell": None,
}

# -- HTML ---------------------------------------------------------------------
html_theme = "alabaster"
html_theme_options = {
    "description": "Multi-task, transfer, meta- and continual learning for scikit-learn",
    "fixed_sidebar": True,
    "show_powered_by": False,
}
html_static_path = []
html_show_sourcelink = False
html_title = f"sktransfer {release}"


# -- skip the methods scikit-learn generates or documents itself ---------------
# ``set_{fit,predict,...}_request``, ``get_metadata_routing`` and
# ``set_output`` come from scikit-learn, and their docstrings link to labels of
# scikit-learn's own documentation. The user guide explains them instead.
def _skip_sklearn_routing_methods(app, what, name, obj, skip, options):
    is_request_setter = name.startswith("set_") and name.endswith("_request")
    is_inherited_router = (
        name in ("get_metadata_routing", "set_output")
        and getattr(obj, "__module__", "").startswith("sklearn.")
    )
    if is_request_setter or is_inherited_router:
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_sklearn_routing_methods)
