"""The linear-forecast benchmark (benchmarks/linear_horizon.py) on the bundled polymer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import mdnext

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import linear_horizon  # noqa: E402

from conftest import BUNDLED_PATHS  # noqa: E402


def test_direct_one_step_forecast_is_the_prior(tmp_path):
    """At h = 1 the direct least-squares fit has the prior's features, target and windows: the same forecast."""
    output = tmp_path / "lh.json"
    assert linear_horizon.main([str(BUNDLED_PATHS), "--lags", "4", "--horizons", "1,5,20", "--output", str(output)]) == 0
    report = json.loads(output.read_text())
    rows = {row["horizon"]: row for row in report["rows"]}
    assert sorted(rows) == [1, 5, 20] and report["starts"][2] == 64 and "machine" in report
    assert rows[1]["direct_linear"] == pytest.approx(rows[1]["iterated_prior"], rel=1e-6)
    for row in rows.values():
        assert 0 < row["iterated_prior"] < row["zero"] and 0 < row["direct_linear"] < row["zero"]


def test_too_short_a_test_split_is_one_line(tmp_path, capsys):
    short = tmp_path / "short.npz"
    mdnext.save(mdnext.load(BUNDLED_PATHS)[:120], short)
    assert linear_horizon.main([str(short), "--horizons", "100", "--output", str(tmp_path / "x.json")]) == 2
    assert "too short" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
