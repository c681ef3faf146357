"""The installed package: plugins live under mdnext.plugins, never as a top-level module."""

import subprocess
import sys

from click.testing import CliRunner

import mdnext
from mdnext.cli import main


def test_no_top_level_plugins_module(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "import plugins"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0 and "No module named 'plugins'" in result.stderr
    ok = subprocess.run(
        [sys.executable, "-c", "import mdnext.plugins.npz, mdnext.plugins.mdanalysis, mdnext.plugins.ase"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert ok.returncode == 0, ok.stderr


def test_import_has_no_heavy_side_effects(tmp_path):
    code = "import sys, mdnext; print('torch' in sys.modules, 'MDAnalysis' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.stdout.split() == ["False", "False"]


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and mdnext.__version__ in result.output
