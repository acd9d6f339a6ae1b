"""Sphinx configuration of the diffcontract documentation.

Build (warnings are errors), from the repository root:

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))  # document the working tree's package, wherever the build runs

import diffcontract  # noqa: E402

project = "diffcontract"
author = "the diffcontract authors"
copyright = "the diffcontract authors"
release = diffcontract.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "cli_reference",  # docs/_ext/cli_reference.py: the CLI reference from the real argparse parser
    "api_coverage",  # docs/_ext/api_coverage.py: every name in __all__ is documented
]
api_coverage_modules = ["diffcontract"]  # the one API page that lists names by hand

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
root_doc = "index"

# MyST: $...$ and $$...$$ math, amsmath environments, ::: fences, anchors for headings down to ###.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# API reference from the docstrings (Google style).
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autosummary_generate = False  # summary tables only; their entries are documented by autodoc on the same pages
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False  # "Returns: (a, b): ..." stays text instead of cross-references to "a" and "b"
napoleon_use_ivar = True  # "Attributes:" as fields of the class, not duplicate attribute entries

nitpicky = False

html_theme = "furo"
html_title = f"diffcontract {release}"
