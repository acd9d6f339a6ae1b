"""Layers import only downward (STYLE.md "Layout shows the flow"; issue 16 item 5).

Every module of ``diffcontract/`` is parsed with ``ast``; every import, at module level or inside a
function, is mapped to the top-level unit it reaches (``solvers/driver.py`` -> ``solvers``) and
checked against ``LAYERS``. A failure names every offending ``module -> imported module``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "diffcontract"

#: curves & data -> problem -> expectation / formulation -> solvers -> mechanism, sensitivity,
#: learned -> analysis -> api, bench (the harness scores ``api.solve``'s methods) -> cli. ``numerics`` (shared root finding, projections, small QP) sits
#: with ``_precision`` at the bottom. ``api`` (the public ``solve``, which can dispatch to a learned
#: mechanism) may use everything but the CLI; the package's ``__init__`` re-exports the public API
#: and is, with the CLI, the top: below the CLI nothing imports it (``from .. import X`` of a name
#: that is not a module counts as importing ``__init__``).
LAYERS = {
    "_precision": 0, "_version": 0, "_progress": 0, "_jit": 0, "_cache": 0, "numerics": 0, "curves": 0, "data": 0,
    "problem": 1,
    "expectation": 2, "formulation": 2,
    "solvers": 3,
    "mechanism": 4, "sensitivity": 4, "learned": 4,
    "analysis": 5,
    "api": 6, "bench": 6,
    "cli": 7, "__init__": 7,
}
#: Units of one layer may import each other (curves uses ``_precision``), except these siblings:
#: none of them needs another (the verifier shares no code with the solvers or the learned
#: mechanism; sensitivities and the learned mechanism build on the solvers only).
SIBLINGS = {"mechanism", "sensitivity", "learned"}
#: Plotting lives in analysis and cli only, argument parsing in cli only (library code takes arguments).
ABOVE_ONLY = {"matplotlib": LAYERS["analysis"], "argparse": LAYERS["cli"]}


def _unit(path: Path) -> str:
    """``diffcontract/solvers/driver.py`` -> ``solvers``; ``diffcontract/problem.py`` -> ``problem``."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _target(parts: list[str]) -> str | None:
    """The unit an absolute dotted name reaches (``diffcontract.x.y`` -> ``x``), None outside the package."""
    if not parts or parts[0] != PACKAGE.name:
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path):
    """Yield (absolute dotted name, line) of every import in ``path``, at any depth."""
    package = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = package[:-1]  # the package a relative import starts from (for __init__ too)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split("."), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            base = base + (node.module.split(".") if node.module else [])
            folder = PACKAGE.parent.joinpath(*base)
            for alias in node.names:  # from .. import _precision: the name is the module imported
                sub = folder / alias.name
                named = sub.is_dir() or sub.with_suffix(".py").is_file()
                yield base + ([alias.name] if named else []), node.lineno


def _allowed(source: str, target: str) -> bool:
    if source == target or LAYERS[target] < LAYERS[source]:
        return True
    return LAYERS[target] == LAYERS[source] and not (source in SIBLINGS and target in SIBLINGS)


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer():
    units = {_unit(path) for path in _modules()}
    unmapped = sorted(units - set(LAYERS))
    assert not unmapped, f"give these units a layer in tests/test_layers.py LAYERS: {unmapped}"


def test_imports_point_down():
    offences = set()
    for path in _modules():
        source = _unit(path)
        if source not in LAYERS:
            continue  # reported by test_every_module_has_a_layer
        for parts, line in _imports(path):
            target = _target(parts)
            if target is not None and not _allowed(source, target):
                module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
                offences.add(f"{module}:{line} -> {'.'.join(parts)}")
    assert not offences, "upward or sibling imports:\n" + "\n".join(sorted(offences))


def test_no_plotting_below_analysis_no_argument_parsing_below_cli():
    offences = set()
    for path in _modules():
        source = _unit(path)
        for parts, line in _imports(path):
            lowest = ABOVE_ONLY.get(parts[0] if parts else "")
            if lowest is not None and source in LAYERS and LAYERS[source] < lowest:
                offences.add(f"{path.relative_to(PACKAGE.parent)}:{line} -> {'.'.join(parts)}")
    assert not offences, "plotting below analysis or argument parsing below cli:\n" + "\n".join(sorted(offences))


def test_the_check_reads_relative_and_nested_imports():
    # The checks above pass vacuously if imports are misread: pin the reader on the package's own files.
    names = {".".join(parts) for parts, _ in _imports(PACKAGE / "cli" / "__init__.py")}
    assert {"diffcontract.cli.demo", "diffcontract.cli._args"} <= names
    names = {".".join(parts) for parts, _ in _imports(PACKAGE / "cli" / "solve.py")}
    assert {"diffcontract", "diffcontract.analysis", "diffcontract.analysis.report"} <= names  # in functions
    names = {".".join(parts) for parts, _ in _imports(PACKAGE / "analysis" / "plots.py")}
    assert {"diffcontract._precision", "diffcontract.mechanism"} <= names  # from .. import _precision
    assert not _allowed("solvers", "learned") and not _allowed("learned", "mechanism")
    assert _allowed("learned", "solvers") and _allowed("api", "learned") and _allowed("cli", "api")
    assert not _allowed("analysis", "api") and not _allowed("api", "cli") and not _allowed("solvers", "__init__")


def test_import_diffcontract_imports_no_plotting_training_or_data():
    """matplotlib, tqdm, scikit-learn, the data sources, curve fitting and the learned mechanism's
    training are imported where they are used, not by ``import diffcontract`` (issue 18: a lean import)."""
    lazy = ("matplotlib", "tqdm", "sklearn", "diffcontract.data", "diffcontract.curves.fitting",
            "diffcontract.learned.train", "diffcontract.analysis.plots")
    code = (f"import sys, diffcontract as dc; print(sorted(m for m in {lazy!r} if m in sys.modules))\n"
            "print(dc.data.__name__, dc.curves.fit_family.__module__)")  # then still reachable
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    imported, reachable = out.strip().splitlines()
    assert imported == "[]"
    assert reachable.split() == ["diffcontract.data", "diffcontract.curves.fitting"]
