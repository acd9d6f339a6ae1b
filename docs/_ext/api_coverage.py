"""Sphinx extension: every public name of a package must be documented somewhere in the API reference.

The top-level page (``docs/api/diffcontract.md``) lists the names of ``diffcontract.__all__`` one by
one, grouped by topic; the subpackage pages use ``automodule`` and follow their ``__all__`` by
themselves. So that the grouped page cannot silently fall behind the package, this check warns
(and ``-W`` fails the build) for any name in ``__all__`` of a module in ``api_coverage_modules``
that no page documents, as ``<module>.<name>`` or as a module of that name.
"""

from __future__ import annotations

import importlib

from sphinx.util import logging

logger = logging.getLogger(__name__)


def _check(app, env) -> None:
    domain = env.get_domain("py")
    documented = set(domain.objects) | set(getattr(domain, "modules", {}))
    for module_name in app.config.api_coverage_modules:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            if name.startswith("__"):
                continue
            if f"{module_name}.{name}" not in documented:
                logger.warning(f"{module_name}.{name} is in {module_name}.__all__ but no API page documents it "
                               f"(add it to docs/api/)", type="api_coverage")


def setup(app):
    app.add_config_value("api_coverage_modules", [], "env")
    app.connect("env-check-consistency", _check)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
