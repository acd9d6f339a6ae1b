"""Learning-curve data (diffcontract/data): shipped tables, source specs, aggregation, LCDB reader."""

from __future__ import annotations

import importlib.util
from importlib import resources

import numpy as np
import pytest

from diffcontract import data
from diffcontract.data import LearningCurve, lcdb_extract, load_source, shipped_sklearn_curves
from diffcontract.data._record import aggregate
from diffcontract.data.sklearn_curves import anchor_sizes


def test_shipped_lcdb_extract_names_source_and_licence():
    curves = lcdb_extract()
    assert len(curves) == 12 and len({c.dataset for c in curves}) == 4
    for c in curves:
        assert c.source == "lcdb-extract" and np.all(np.diff(c.sizes) > 0) and c.sizes[0] == 16
        assert np.all((c.mean >= 0) & (c.mean <= 1)) and np.all(c.count > 1)
    header = " ".join(data._csv.shipped_comments("lcdb_extract.csv"))
    assert "Mohr" in header and "MIT" in header and "LCDB-LICENSE.txt" in header
    licence = resources.files("diffcontract.data").joinpath("LCDB-LICENSE.txt").read_text()
    assert "MIT License" in licence and "Felix Mohr" in licence


def test_shipped_sklearn_curves():
    curves = shipped_sklearn_curves()
    assert {(c.dataset, c.learner) for c in curves} == {(d, l) for d in ("digits", "breast_cancer", "wine")
                                                         for l in ("logreg", "mlp")}
    digits = load_source("sklearn:digits:logreg")
    assert digits.sizes[0] == 16 and digits.sizes[-1] == 1347  # 1797 - ceil(0.25 * 1797) samples in the pool
    assert np.all(digits.count == 20)
    assert digits.mean[-1] > digits.mean[0] + 0.3  # a real learning curve: 16 samples << 1347


def test_anchor_sizes_follow_lcdb():
    assert anchor_sizes(133).tolist() == [16, 23, 32, 45, 64, 91, 128, 133]
    assert anchor_sizes(128).tolist() == [16, 23, 32, 45, 64, 91, 128]


def test_load_source_errors():
    assert load_source("lcdb-extract:44:svc_rbf").learner == "SVC_rbf"
    for spec, match in [("digits", "source must look like"), ("sklearn:iris:logreg", "unknown scikit-learn dataset"),
                        ("sklearn:digits:svm", "unknown learner"), ("web:1:x", "unknown source"),
                        ("lcdb:abc:SVC_rbf", "OpenML id"), ("lcdb-extract:44:Nope", "no curve")]:
        with pytest.raises(ValueError, match=match):
            load_source(spec)


def test_aggregate_matches_a_loop():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 3, 200)
    sizes = rng.choice([16.0, 23.0, 32.0], 200)
    scores = rng.random(200)
    scores[::17] = np.nan
    k, s, mean, std, count = aggregate(keys, sizes, scores)
    for i in range(k.size):
        sel = (keys == k[i]) & (sizes == s[i]) & np.isfinite(scores)
        assert count[i] == sel.sum()
        # Sum-based moments vs numpy's two-pass ones: agreement to float64 rounding of O(1) values.
        assert mean[i] == pytest.approx(scores[sel].mean(), rel=1e-12)
        assert std[i] == pytest.approx(scores[sel].std(ddof=1), rel=1e-9, abs=1e-12)


def test_record_validation_and_split():
    c = LearningCurve("s", "d", "l", np.array([16.0, 32.0, 64.0, 128.0, 256.0, 512.0]), np.linspace(0.5, 0.9, 6),
                      np.zeros(6), np.ones(6, int))
    fit, held = c.split(0.5)
    assert fit.sizes.tolist() == [16.0, 32.0, 64.0, 128.0] and held.sizes.tolist() == [256.0, 512.0]  # min_fit = 4
    with pytest.raises(ValueError, match="increasing"):
        LearningCurve("s", "d", "l", np.array([32.0, 16.0]), np.array([0.5, 0.6]), np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="accuracies"):
        LearningCurve("s", "d", "l", np.array([16.0, 32.0]), np.array([0.5, 1.6]), np.zeros(2), np.ones(2))


def test_lcdb_reader_says_how_to_install_the_extra(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ModuleNotFoundError, match=r"\[lcdb\]"):
        data.lcdb.lcdb_csv_path()


HAVE_LCDB = importlib.util.find_spec("lcdb") is not None


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_LCDB, reason="needs the lcdb extra")
def test_full_lcdb_table_agrees_with_the_shipped_extract(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFCONTRACT_CACHE", str(tmp_path))
    for c in lcdb_extract():
        full = data.lcdb_curve(int(c.dataset), c.learner)
        np.testing.assert_array_equal(full.sizes, c.sizes)
        np.testing.assert_allclose(full.mean, c.mean, atol=5e-7)  # the extract is written with 6 decimals
    assert len(data.lcdb_curves(min_sizes=12)) > 1000


@pytest.mark.slow
def test_train_curve_small():
    c = data.train_curve("wine", "logreg", repeats=2)
    assert c.source == "sklearn" and c.sizes[-1] == 133 and np.all(c.count <= 2)
    assert np.all((c.mean > 0.5) & (c.mean <= 1.0))  # wine is easy for logistic regression
