"""Every figure the package writes (analysis/plots.py), checked from the figure objects, not pixels.

The figures: the menu and reward laws of the paper's three Sec. 6.2 scenarios (scenario 2 pools all
five types), the two Sec. 6.1 sweep figures on a 2 x 2 grid, and a learning-curve fit with a band.
Checked on each: every artist that carries data has a legend entry (or, for a heatmap, a labelled
colorbar); every axes has an x label, a y label and a title; no tick labels with an offset; nothing
drawn outside the axes; no legend over data; compared panels share their scales; pooled types are
one marker; a point mass is a stem. Then the file formats and their validation.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.container import StemContainer
from matplotlib.lines import Line2D

import diffcontract as dc
from diffcontract.analysis import paper_scenario
from diffcontract.analysis import plots
from diffcontract.analysis.sweep import save_sweep, two_type_sweep
from diffcontract.curves import fit_family, fit_learned
from diffcontract.data import load_source

FIT_SOURCE = "lcdb-extract:6:LogisticRegression"
# Display coordinates are pixels: an artist may sit on the frame (a stem at probability 0, an axvline
# spanning the axes) and land a rounding error outside it.
PIXEL_SLACK = 1.0


@pytest.fixture(scope="module")
def solutions():
    return {k: dc.solve(paper_scenario(k), method="exact") for k in (1, 2, 3)}


@pytest.fixture(scope="module")
def sweep():
    # Tiny grid: the figures need two values per axis; the ALM compilation dominates the time.
    return two_type_sweep(participants=[2, 4], p1=[0.3, 0.7], progress=False)


@pytest.fixture(scope="module")
def fit_inputs():
    data = load_source(FIT_SOURCE)
    curves = {"pow4": fit_family("pow4", data, restarts=2, steps=200).curve,
              "learned": fit_learned(data, members=3, components=2, steps=200).curve}  # members > 1: a band
    return data, curves


@pytest.fixture(scope="module")
def figures(solutions, sweep, fit_inputs):
    figs = {f"scenario{k}_{name}": fig for k, s in solutions.items()
            for name, fig in plots.solution_figures(s, f"Scenario {k}").items()}
    figs.update(plots.sweep_figures(sweep))
    figs["fit"] = plots.fit_figure(*fit_inputs, fit_up_to=300.0)
    for fig in figs.values():
        fig.draw_without_rendering()  # lays out the figure: legends, offset texts and extents get computed
    return figs


def _mappables(fig):
    return [a for ax in fig.axes for a in (*ax.collections, *ax.images) if a.get_array() is not None]


def _colorbar_axes(fig):
    return {m.colorbar.ax for m in _mappables(fig) if m.colorbar is not None}


def _data_axes(fig):
    return [ax for ax in fig.axes if ax not in _colorbar_axes(fig)]


def _has_labelled_colorbar(artist, fig) -> bool:
    """A heatmap is labelled by its colorbar, or by the colorbar of a mesh sharing its norm (one per row)."""
    bars = [m for m in _mappables(fig) if m.colorbar is not None and m.colorbar.ax.get_ylabel()]
    return any(artist is m or artist.norm is m.norm for m in bars)


def _unlabelled(ax, fig) -> list[str]:
    """Artists on ``ax`` that carry data but have no legend entry (nor a labelled colorbar)."""
    legend = ax.get_legend()
    entries = {t.get_text() for t in legend.get_texts()} if legend else set()
    covered, missing = set(), []
    for container in ax.containers:
        if container.get_label() in entries:
            covered.update(container.get_children())  # the stems, bars or error bars of one entry
        else:
            missing.append(f"{type(container).__name__} {container.get_label()!r}")
    for artist in (*ax.lines, *ax.collections, *ax.patches, *ax.images):
        if artist in covered or not artist.get_visible():
            continue
        if getattr(artist, "get_array", lambda: None)() is not None and _has_labelled_colorbar(artist, fig):
            continue
        if artist.get_label() not in entries:
            missing.append(f"{type(artist).__name__} {artist.get_label()!r}")
    return missing


def _display_points(line: Line2D) -> np.ndarray:
    return line.get_transform().transform(np.asarray(line.get_xydata(), float))


def _inside(points, box, margin: float) -> np.ndarray:
    """Which display points lie in ``box`` grown by ``margin`` pixels (shrunk where negative)."""
    return ((points[:, 0] > box.x0 - margin) & (points[:, 0] < box.x1 + margin)
            & (points[:, 1] > box.y0 - margin) & (points[:, 1] < box.y1 + margin))


def test_every_figure_the_package_writes_is_rendered(figures):
    assert set(figures) == {f"scenario{k}_{n}" for k in (1, 2, 3) for n in ("menu", "rewards")} | {
        "sweep_contracts", "sweep_welfare", "fit"}


def test_every_artist_with_data_has_a_legend_entry(figures):
    for name, fig in figures.items():
        for ax in _data_axes(fig):
            assert not _unlabelled(ax, fig), f"{name} / {ax.get_title()!r}: {_unlabelled(ax, fig)}"


def test_every_axes_has_labels_and_a_title_in_words(figures):
    words = re.compile(r"[A-Za-z]{3,}\s+\S")  # words, not an identifier such as "p_1" or "scenario1: menu"
    for name, fig in figures.items():
        for ax in _data_axes(fig):
            for text in (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()):
                assert words.search(text), f"{name}: {text!r}"
        for cax in _colorbar_axes(fig):
            assert words.search(cax.get_ylabel()), f"{name}: colorbar label {cax.get_ylabel()!r}"
    for k in (1, 2, 3):
        assert figures[f"scenario{k}_menu"].axes[0].get_title() == f"Scenario {k}: contract menu"
    assert plots._words("scenario1") == "Scenario 1"  # the title save_solution_figures makes of its stem


# Units each figure's axes state (money is the valuation's unit v; data in units of data).
UNITS = {"scenario1_menu": ("units of data", "money"), "scenario1_rewards": ("money", "probability"),
         "sweep_contracts": ("probability", "participants"), "sweep_welfare": ("probability", "participants"),
         "fit": ("samples", "accuracy")}


def test_axis_labels_name_their_units(figures):
    for name, (x_unit, y_unit) in UNITS.items():
        for ax in _data_axes(figures[name])[:2]:
            assert x_unit in ax.get_xlabel() and y_unit in ax.get_ylabel(), f"{name}: {ax.get_xlabel()!r}"
    for cax in _colorbar_axes(figures["sweep_contracts"]) | _colorbar_axes(figures["sweep_welfare"]):
        assert "money" in cax.get_ylabel() or "units of data" in cax.get_ylabel()


def test_no_offset_text_on_any_axis(figures):
    for name, fig in figures.items():
        for ax in fig.axes:
            for axis in (ax.xaxis, ax.yaxis):
                assert axis.get_offset_text().get_text() == "", f"{name}: offset {axis.get_offset_text().get_text()!r}"


def test_lines_stay_inside_their_axes_and_legends_cover_no_data(figures):
    for name, fig in figures.items():
        for ax in _data_axes(fig):
            box = ax.get_window_extent()
            legend = ax.get_legend() and ax.get_legend().get_window_extent()
            for line in ax.lines:
                points = _display_points(line)
                assert _inside(points, box, PIXEL_SLACK).all(), f"{name}: {line.get_label()!r} leaves the axes"
                if legend:
                    covered = _inside(points, legend, -PIXEL_SLACK) & _inside(points, box, 0.0)
                    assert not covered.any(), f"{name}: the legend covers {line.get_label()!r}"


def test_compared_panels_share_their_scales(figures):
    for k in (1, 2, 3):
        axes = figures[f"scenario{k}_rewards"].axes
        assert len({ax.get_ylim() for ax in axes}) == 1 and len({ax.get_xlim() for ax in axes}) == 1
        assert axes[0].get_ylim()[0] == 0.0
    contracts = figures["sweep_contracts"]
    panels = _data_axes(contracts)
    assert len(panels) == 4 and len({ax.get_ylim() for ax in panels}) == 1
    for row in (panels[:2], panels[2:]):  # m_1 beside m_2, t_1 beside t_2: one color scale per row
        (a,), (b,) = (ax.collections for ax in row)
        assert (a.norm.vmin, a.norm.vmax) == (b.norm.vmin, b.norm.vmax)


def test_pooled_types_are_one_marker_with_the_pooled_label(figures, solutions):
    for k, solution in solutions.items():
        (ax,) = figures[f"scenario{k}_menu"].axes
        markers = [line for line in ax.lines if line.get_linestyle() == "None"]
        groups = solution.pooled_groups()
        assert len(markers) == len(groups)
        for marker, group in zip(markers, groups):
            if len(group) > 1:
                assert f"types {group[0] + 1}-{group[-1] + 1} (pooled)" in marker.get_label()
            else:
                assert marker.get_label().startswith(f"type {group[0] + 1} ")
    (ax,) = figures["scenario2_menu"].axes
    (marker,) = [line for line in ax.lines if line.get_linestyle() == "None"]
    assert "types 1-5 (pooled)" in marker.get_label()
    assert len(figures["scenario2_rewards"].axes) == 1  # five identical laws: one panel


def test_a_point_mass_is_one_stem_with_probability_one(figures, solutions):
    (ax,) = figures["scenario2_rewards"].axes
    (stem,) = [c for c in ax.containers if isinstance(c, StemContainer)]
    x, y = stem.markerline.get_data()
    t = float(solutions[2].rewards[0])
    # The probabilities of 1001 outcomes summed in float64: 1 to rounding.
    np.testing.assert_allclose([x[0], y[0]], [t, 1.0], rtol=1e-12, atol=1e-12)
    assert len(x) == 1
    lo, hi = ax.get_xlim()
    assert lo < t < hi and hi - lo > 1e-3 * t  # a readable range around the atom, not a 1e-9-wide axis


def test_a_law_with_many_atoms_is_a_histogram_with_the_same_checks(solutions, monkeypatch):
    monkeypatch.setattr(plots, "MAX_STEMS", 5)  # scenario 3's laws have 55 atoms each
    fig = plots.reward_figure(solutions[3], "Scenario 3")
    fig.draw_without_rendering()
    axes = _data_axes(fig)
    for ax in axes:
        assert not _unlabelled(ax, fig) and "per bin" in ax.get_ylabel() and ax.get_title()
        assert not ax.containers and [type(a).__name__ for a in ax.patches] == ["StepPatch"]
        assert ax.xaxis.get_offset_text().get_text() == ax.yaxis.get_offset_text().get_text() == ""
    assert len({ax.get_ylim() for ax in axes}) == 1 and len({ax.get_xlim() for ax in axes}) == 1


def test_formats_write_the_named_suffix(tmp_path, solutions, sweep, fit_inputs):
    # Every writer saves through one function (plots._save), so each writer is checked with one
    # format other than png (the tests above and the demo write png) and each format is written once
    # more: the sweep's heatmaps take ~1 s a file in a vector format.
    paths = plots.save_solution_figures(solutions[2], tmp_path / "pdf", "scenario2", fmt="pdf")
    paths += save_sweep(sweep, str(tmp_path / "pdf"), fmt="pdf")[2:]
    paths.append(plots.plot_fits(*fit_inputs, tmp_path / "pdf" / "fit", fmt="pdf"))
    paths.append(plots.plot_fits(*fit_inputs, tmp_path / "fit_vector", fmt="svg"))
    assert [p.rsplit(".", 1)[1] for p in paths] == ["pdf"] * 5 + ["svg"]
    assert all(Path(p).stat().st_size > 1000 for p in paths)
    assert plots.plot_fits(*fit_inputs, tmp_path / "fit.svg").endswith("fit.svg")  # the suffix decides


def test_a_bad_format_is_a_value_error_naming_it(tmp_path, solutions, sweep, fit_inputs):
    with pytest.raises(ValueError, match="fmt.*'jpg'"):
        plots.save_solution_figures(solutions[2], tmp_path, "s", fmt="jpg")
    with pytest.raises(ValueError, match="fmt.*'gif'"):
        save_sweep(sweep, str(tmp_path / "sweep"), fmt="gif")
    assert not (tmp_path / "sweep").exists()  # checked before anything is written
    with pytest.raises(ValueError, match="fmt.*'bmp'"):
        plots.plot_sweep(sweep, str(tmp_path), fmt="bmp")
    with pytest.raises(ValueError, match="fmt.*None"):
        plots.save_solution_figures(solutions[2], tmp_path, "s", fmt=None)
    with pytest.raises(ValueError, match="path.*fit.jpg"):
        plots.plot_fits(*fit_inputs, tmp_path / "fit.jpg")
    with pytest.raises(ValueError, match="fmt 'pdf'.*fit.png"):
        plots.plot_fits(*fit_inputs, tmp_path / "fit.png", fmt="pdf")
    assert not list(tmp_path.iterdir())


def test_no_pyplot_no_backend_change_and_import_diffcontract_stays_matplotlib_free():
    code = (
        "import sys, io\n"
        "import diffcontract, diffcontract.analysis\n"
        "assert 'matplotlib' not in sys.modules, 'import diffcontract imported matplotlib'\n"
        "import matplotlib\n"
        "matplotlib.use('svg')  # a user's own choice\n"
        "from diffcontract.analysis import plots\n"
        "from diffcontract.data import load_source\n"
        f"plots.fit_figure(load_source('{FIT_SOURCE}'), {{}}).savefig(io.BytesIO(), format='png')\n"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
