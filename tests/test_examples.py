"""The examples in examples/ run end to end (reduced sizes) and print what their README promises.

Each example runs as a subprocess with ``sys.executable`` (the shell walk-through with the
``mdnext`` of this interpreter first on PATH). The default run uses ``--quick`` / ``QUICK=1``;
the full sizes run under ``-m slow``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import BUNDLED_PATHS, REPO, TUTORIAL_PATHS

EXAMPLES = REPO / "examples"
#: Seconds a quick run may take before it counts as hung (they take 5-25 s with one torch thread).
QUICK_TIMEOUT = 240
#: The same for the full sizes (30-70 s each on 2 CPU cores).
FULL_TIMEOUT = 600


def example_env(**changes: str) -> dict[str, str]:
    """The environment for an example: one torch thread unless set (on a shared 2-core machine two
    threads that wait for each other made the quick runs up to 5x slower; idle, it costs little)."""
    env = dict(os.environ, **changes)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run(command: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run ``command``; fail with its output unless it exits 0; return its stdout."""
    env = example_env() if env is None else env
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def run_python(script: str, *args: str, cwd: Path, timeout: float = QUICK_TIMEOUT) -> str:
    return run([sys.executable, str(EXAMPLES / script), *args], cwd, timeout)


def number(pattern: str, text: str) -> float:
    """The float captured by ``pattern`` (one group) in ``text``."""
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"{pattern!r} not in output:\n{text}"
    return float(match.group(1))


TABLE_HEADER = re.compile(r"^model\s+test MSE \(Å²\)\s+RMSD@1 \(Å\)", re.MULTILINE)
BASELINE_ROWS = ("zero", "constant_velocity", "constant_acceleration", "autoregressive", "centred_autoregressive", "linear")


def check_table(text: str, model_row: str) -> None:
    assert TABLE_HEADER.search(text), text
    for row in (model_row, *BASELINE_ROWS):
        assert re.search(rf"^{re.escape(row)}\s+\d", text, re.MULTILINE), f"no table row {row!r} in\n{text}"


# --------------------------------------------------------------------------- tutorial.py


def check_tutorial(text: str) -> None:
    check_table(text, "e3nn, tutorial (k=0)")
    check_table(text, "e3nn, mdnext (k=4)")
    check_table(text, "e3nn + bonds (k=4)")
    assert "its prior (force_matched)" in text and "its prior (centred_autoregressive)" in text
    relative = r"Å \(([\d.e+-]+) of the displacement RMS\)"
    tutorial = number(r"e3nn, tutorial \(k=0\)\s+\S+ " + relative, text)
    default = number(r"e3nn, mdnext \(k=4\)\s+\S+ " + relative, text)
    linear = number(r"linear \(frame @ W \+ b\)\s+\S+ " + relative, text)
    bonded = number(r"e3nn \+ bonds \(k=4\)\s+\S+ " + relative, text)
    assert tutorial < 1e-4 and default < 1e-4 and bonded < 1e-4  # equivariant up to float32 rounding
    assert linear > 1e-2  # frame @ W + b is not


def test_tutorial_quick(tmp_path):
    text = run_python("tutorial.py", "--quick", cwd=tmp_path)
    expected = TUTORIAL_PATHS if TUTORIAL_PATHS.is_file() else BUNDLED_PATHS
    assert text.startswith(f"data: {expected} -> Frames(150 frames, 12 atoms"), text
    check_tutorial(text)


@pytest.mark.slow
def test_tutorial_full(tmp_path):
    text = run_python("tutorial.py", "--data", str(BUNDLED_PATHS), cwd=tmp_path, timeout=FULL_TIMEOUT)
    assert "Frames(2048 frames, 12 atoms" in text
    assert "RMSD@100 (Å)" in text
    check_tutorial(text)


# --------------------------------------------------------------------------- mdanalysis_adk.py


def check_adk(text: str, out: Path, n_atoms: int, n_frames: int) -> None:
    pytest.importorskip("MDAnalysisTests")
    from MDAnalysis.coordinates.DCD import DCDReader

    assert f"input: Frames(98 frames, {n_atoms} atoms" in text
    check_table(text, "e3nn (k=2)")
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)$", text, re.MULTILINE)
    assert [int(r[0]) for r in rows] == list(range(1, n_frames + 1)), text
    assert [float(r[1]) for r in rows] == [98.0 + i for i in range(1, n_frames + 1)]  # 1 ps after t = 98 ps
    rmsd = np.array([float(r[2]) for r in rows])
    assert np.all(rmsd > 0) and np.all(rmsd < 5.0)  # moved, but not exploded (Å)
    path = out / "adk_next.dcd"
    assert f"wrote {path}: {n_frames} frames of {n_atoms} atoms, dt 1 ps" in text
    with DCDReader(str(path)) as written:
        assert (written.n_frames, written.n_atoms) == (n_frames, n_atoms)
        assert written.dt == pytest.approx(1.0, rel=1e-6)


def test_mdanalysis_adk_quick(tmp_path):
    pytest.importorskip("MDAnalysisTests")
    text = run_python("mdanalysis_adk.py", "--quick", "--out", str(tmp_path / "out"), cwd=tmp_path)
    check_adk(text, tmp_path / "out", n_atoms=60, n_frames=5)


@pytest.mark.slow
def test_mdanalysis_adk_full(tmp_path):
    pytest.importorskip("MDAnalysisTests")
    text = run_python("mdanalysis_adk.py", "--out", str(tmp_path), cwd=tmp_path, timeout=FULL_TIMEOUT)
    check_adk(text, tmp_path, n_atoms=214, n_frames=20)


# --------------------------------------------------------------------------- ase_lj.py


def check_ase(text: str, out: Path, n_frames: int, steps: int) -> None:
    import ase.io

    assert f"reference MD: Frames({n_frames} frames, 32 atoms [Ar: 32], dt=0.1 ps, pbc=[True, True, True])" in text
    assert "dt read from the ASE images: 0.1 ps (expected 0.1 ps)" in text
    check_table(text, "e3nn (k=8)")
    assert f"LearnedDynamics: {steps} steps of 100 fs" in text
    assert number(r"max deviation from mdnext.extrapolate over the first 20 steps: (\S+) Å", text) < 1e-6
    assert len(ase.io.read(out / "learned.traj", index=":")) == steps + 1
    log = (out / "learned.log").read_text().splitlines()
    assert log[0].split() == ["Time[ps]", "Etot[eV]", "Epot[eV]", "Ekin[eV]", "T[K]"]
    assert len(log) == steps + 2  # header, the start, one line per step
    assert "\n".join([log[0], log[1]]) in text  # printed
    reference = number(r"mean T (\d+) K; from finite differences", text)
    assert 60 < reference < 140  # equilibrated near 100 K


def test_ase_lj_quick(tmp_path):
    text = run_python("ase_lj.py", "--quick", "--out", str(tmp_path), cwd=tmp_path)
    check_ase(text, tmp_path, n_frames=100, steps=20)


@pytest.mark.slow
def test_ase_lj_full(tmp_path):
    text = run_python("ase_lj.py", "--out", str(tmp_path), cwd=tmp_path, timeout=FULL_TIMEOUT)
    check_ase(text, tmp_path, n_frames=300, steps=100)
    model = number(r"^e3nn \(k=8\)\s+(\S+)", text)
    autoregressive = number(r"^autoregressive\s+(\S+)", text)
    assert model < 0.5 * autoregressive  # 10 epochs: a few percent of the best baseline


# --------------------------------------------------------------------------- cli_walkthrough.sh


def run_walkthrough(tmp_path: Path, quick: bool) -> str:
    pytest.importorskip("MDAnalysisTests")
    env = example_env(TMPDIR=str(tmp_path), QUICK="1" if quick else "0")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    text = run(["bash", str(EXAMPLES / "cli_walkthrough.sh")], tmp_path, QUICK_TIMEOUT if quick else FULL_TIMEOUT, env)
    commands = re.findall(r"^\$ mdnext (\w+|--version)", text, re.MULTILINE)
    assert commands == ["--version", "info", "info", "convert", "info", "convert", "train", "evaluate",
                        "extrapolate", "info", "extrapolate", "info"], text
    assert not list(tmp_path.glob("mdnext_cli.*"))  # the working directory is removed
    return text


def command_output(text: str, command: str) -> str:
    """What the walk-through printed for the first ``mdnext COMMAND``."""
    return text.split(f"\n$ mdnext {command} ", 1)[1].split("\n$ ", 1)[0]


def table(text: str) -> list[str]:
    """The lines of the first metrics table in ``text``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if TABLE_HEADER.match(line))
    return lines[start:start + 8]


def check_walkthrough(text: str, n_polymer: int, n_adk: int, n_atoms: int) -> None:
    assert f"wrote 98 frames of {n_atoms} atoms to adk_ca.xyz" in text
    assert text.count("test MSE (Å²)") == 3  # train, evaluate, extrapolate without --model
    # evaluate reproduces what train measured, baselines included
    assert table(command_output(text, "evaluate")) == table(command_output(text, "train"))
    assert f"wrote {n_polymer} frames of 12 atoms to polymer_next.extxyz" in text
    assert f"wrote {n_adk} frames of {n_atoms} atoms to adk_next.dcd" in text
    tail = text.split("adk_next.dcd --topology adk_ca.xyz", 1)[1]
    assert re.search(r"^dt:\s+1 ps$", tail, re.MULTILINE), tail
    assert re.search(rf"^time:\s+99 – {98 + n_adk} ps$", tail, re.MULTILINE), tail


def test_cli_walkthrough_quick(tmp_path):
    text = run_walkthrough(tmp_path, quick=True)
    check_walkthrough(text, n_polymer=10, n_adk=5, n_atoms=60)


@pytest.mark.slow
def test_cli_walkthrough_full(tmp_path):
    text = run_walkthrough(tmp_path, quick=False)
    check_walkthrough(text, n_polymer=100, n_adk=20, n_atoms=214)
