"""The command line through click's CliRunner: info, convert, train, evaluate, extrapolate."""

import json

import MDAnalysis as mda
import numpy as np
import pytest
from click.testing import CliRunner
from MDAnalysisTests.datafiles import DCD, GRO, PSF, XTC, XYZ

import mdnext
from mdnext.checkpoint import TrainedModel
from mdnext.cli import main

from conftest import BUNDLED_PATHS


def run(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def assert_user_error(result, *fragments):
    """Exit code 2, one line on the terminal, no traceback."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def info_json(*args):
    return json.loads(run("info", *args, "--json").output)


def test_info_bundled_npz():
    summary = info_json(BUNDLED_PATHS)
    assert summary["n_frames"] == 2048 and summary["n_atoms"] == 12 and summary["repeated_frames"] == []
    assert summary["positions_nbytes"] == 2048 * 12 * 3 * 8


def test_info_tutorial_npz(tutorial_paths):
    summary = info_json(tutorial_paths)
    assert (summary["n_frames"], summary["n_atoms"]) == (2048, 12)
    assert summary["repeated_frames"] == [1]  # the tutorial's file starts with one frame written twice
    assert "repeated:  1 frame(s) equal to the frame before: 1" in run("info", tutorial_paths).output


@pytest.mark.parametrize("topology, trajectory", [(PSF, DCD), (GRO, XTC), (None, XYZ)])
def test_info_matches_mdanalysis(topology, trajectory):
    args = [trajectory] + (["--topology", topology] if topology else [])
    summary = info_json(*args)
    u = mda.Universe(topology, trajectory) if topology else mda.Universe(trajectory)
    assert summary["n_frames"] == u.trajectory.n_frames
    assert summary["n_atoms"] == u.atoms.n_atoms
    if trajectory in (DCD, XTC):
        assert summary["dt_ps"] == pytest.approx(u.trajectory.dt)
    if u.dimensions is not None and np.any(u.dimensions[:3] > 0):
        assert summary["cell_lengths_first_frame"] == pytest.approx(u.dimensions[:3], rel=1e-5)
    else:
        assert summary["cell_first_frame"] is None
    if topology == PSF:
        assert (summary["n_frames"], summary["n_atoms"]) == (98, 3341)


def test_info_matches_ase_extxyz(tmp_path):
    from ase.build import bulk
    from ase.io import read, write

    images = []
    for i in range(4):
        atoms = bulk("Cu", cubic=True) * (2, 2, 2)
        atoms.rattle(0.05, seed=i)
        atoms.info["time_ps"] = 0.01 * i
        images.append(atoms)
    path = tmp_path / "cu.extxyz"
    write(path, images)
    summary = info_json(path)
    back = read(path, ":")
    assert summary["n_frames"] == len(back) and summary["n_atoms"] == len(back[0])
    assert summary["species"] == {"Cu": 32}
    assert summary["dt_ps"] == pytest.approx(0.01)
    np.testing.assert_allclose(summary["cell_first_frame"], back[0].cell.array)
    assert summary["pbc"] == back[0].pbc.tolist()


def test_info_human_readable():
    output = run("info", DCD, "-t", PSF).output
    assert "3341" in output and "98" in output and "dt:" in output


def test_convert_with_stride_and_selection(tmp_path):
    out = tmp_path / "ca.xyz"
    result = run("convert", DCD, out, "-t", PSF, "--select", "name CA", "--stride", "10")
    assert "wrote 10 frames of 214 atoms" in result.output
    frames = mdnext.load(out)
    assert frames.n_frames == 10 and frames.n_atoms == 214
    assert_user_error(CliRunner().invoke(main, ["convert", str(DCD), str(out), "-t", str(PSF)]), "exists")


@pytest.mark.parametrize(
    "make, fragments",
    [
        (lambda p: ("info", p / "missing.dcd"), ["missing.dcd", "no such file"]),
        (lambda p: ("info", p / "x.weird"), ["x.weird", "no reader"]),
        (lambda p: ("info", DCD), ["needs a topology"]),
        (lambda p: ("info", DCD, "-t", PSF, "--select", "name NOPE"), ["selection"]),
        (lambda p: ("info", XTC, "-t", PSF), ["atoms"]),
    ],
)
def test_info_bad_input(tmp_path, make, fragments):
    (tmp_path / "x.weird").write_text("1")
    assert_user_error(CliRunner().invoke(main, [str(a) for a in make(tmp_path)]), *fragments)


def test_bad_input_files(tmp_path):
    truncated = tmp_path / "cut.dcd"
    truncated.write_bytes(open(DCD, "rb").read()[:20000])
    assert_user_error(CliRunner().invoke(main, ["info", str(truncated), "-t", str(PSF)]), "cut.dcd")
    changing = tmp_path / "changing.xyz"
    changing.write_text("2\nframe\nC 0 0 0\nC 1 0 0\n3\nframe\nC 0 0 0\nC 1 0 0\nC 2 0 0\n")
    assert_user_error(CliRunner().invoke(main, ["info", str(changing)]), "changing.xyz")
    nan = tmp_path / "nan.xyz"
    nan.write_text("2\nframe\nC 0 0 0\nC nan 0 0\n")
    assert_user_error(CliRunner().invoke(main, ["info", str(nan)]), "nan.xyz")


@pytest.fixture(scope="module")
def polymer_file(tmp_path_factory):
    """The first 400 frames of the bundled polymer as an mdnext npz with dt."""
    path = tmp_path_factory.mktemp("poly") / "poly.npz"
    mdnext.save(mdnext.load(BUNDLED_PATHS, dt=0.00125)[:400], path)
    return path


@pytest.fixture(scope="module")
def trained_file(polymer_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model.pt"
    metrics = out.with_suffix(".json")
    result = CliRunner().invoke(main, ["train", str(polymer_file), "-k", "2", "--epochs", "2", "-q",
                                       "--val-horizon", "5", "-o", str(out), "--metrics", str(metrics)])
    assert result.exit_code == 0, result.output
    return out, metrics, result.output


def test_train_writes_model_and_metrics(trained_file):
    out, metrics_path, output = trained_file
    metrics = json.loads(metrics_path.read_text())
    for key in ("mse", "baselines", "rollout_rmsd", "equivariance_error", "train_seconds", "epochs", "splits"):
        assert key in metrics
    assert set(metrics["baselines"]) == {"zero", "constant_velocity", "constant_acceleration", "autoregressive",
                                        "centred_autoregressive", "linear"}
    assert set(metrics["rollout_rmsd"]) == {"1", "10", "100"} or set(metrics["rollout_rmsd"]) <= {"1", "10"}
    assert metrics["equivariance_error_relative"] < 1e-4
    assert "autoregressive" in output and out.exists()
    log = TrainedModel.load(out).training
    assert log["config"]["val_horizon"] == 5 and log["config"]["unroll"] == 1


def test_train_fine_tunes_a_trained_model(trained_file, polymer_file, tmp_path):
    out, _, _ = trained_file
    tuned = tmp_path / "tuned.pt"
    run("train", polymer_file, "-k", 2, "--epochs", 1, "-q", "--init", out, "--unroll", 2, "-o", tuned,
        "--horizons", "1,3")
    log = TrainedModel.load(tuned).training
    assert log["init"] == str(out) and log["config"]["unroll"] == 2
    assert set(log["metrics"]["rollout_rmsd"]) == {"1", "3"}
    assert_user_error(CliRunner().invoke(main, ["train", str(polymer_file), "--horizons", "1,x",
                                                "-o", str(tmp_path / "x.pt")]), "--horizons")
    assert_user_error(CliRunner().invoke(main, ["train", str(polymer_file), "-k", "3", "--init", str(out),
                                                "-o", str(tmp_path / "x.pt")]), "history 2")
    assert not (tmp_path / "x.pt").exists()


def test_chain_topology_from_the_command_line(polymer_file, tmp_path):
    """--bonds chain: the equivariant model takes the bonds (force-matched prior, edge classes);
    a model that needs them refuses input without them in one line, and gets them the same way."""
    assert info_json(polymer_file, "--bonds", "chain")["n_bonds"] == 11
    assert info_json(polymer_file)["n_bonds"] is None
    model, metrics = tmp_path / "chain.pt", tmp_path / "chain.json"
    result = run("train", polymer_file, "--bonds", "chain", "-k", 2, "--epochs", 1, "-q", "--cutoff", 1.0,
                 "-o", model, "--metrics", metrics, "--horizons", "1,5")
    assert "its prior (force_matched)" in result.output
    scores = json.loads(metrics.read_text())
    assert scores["prior"]["name"] == "force_matched" and set(scores["prior"]["rollout_rmsd"]) == {"1", "5"}
    # the force-matched prior alone beats the best linear extrapolator on this Langevin chain
    assert scores["prior"]["mse"] < scores["baselines"]["centred_autoregressive"]
    assert TrainedModel.load(model).model.hparams["bond_types"]
    target = tmp_path / "next.xyz"
    assert_user_error(CliRunner().invoke(main, ["extrapolate", str(polymer_file), "--model", str(model), "-n", "3",
                                                "-o", str(target)]), "--bonds chain")
    assert not target.exists()
    run("extrapolate", polymer_file, "--bonds", "chain", "--model", model, "-n", 3, "-o", target)
    assert mdnext.load(target).n_frames == 3
    # the force field alone: the same closed-form fit as the equivariant model's prior
    alone, alone_metrics = tmp_path / "fm.pt", tmp_path / "fm.json"
    run("train", polymer_file, "--bonds", "chain", "--model", "force_matched", "-k", 2, "--cutoff", 1.0, "-q",
        "-o", alone, "--metrics", alone_metrics, "--horizons", "1,5")
    assert json.loads(alone_metrics.read_text())["mse"] == pytest.approx(scores["prior"]["mse"], rel=1e-9)
    assert_user_error(CliRunner().invoke(main, ["train", str(polymer_file), "--model", "force_matched", "-q",
                                                "-o", str(tmp_path / "no.pt")]), "--bonds chain")
    assert not (tmp_path / "no.pt").exists()


def test_evaluate_prints_table_and_json(trained_file, polymer_file, tmp_path):
    out, _, _ = trained_file
    json_path = tmp_path / "eval.json"
    result = run("evaluate", polymer_file, "--model", out, "--horizons", "1,5", "--json", json_path)
    assert "constant_velocity" in result.output and "RMSD@5" in result.output
    assert set(json.loads(json_path.read_text())["rollout_rmsd"]) == {"1", "5"}
    assert_user_error(CliRunner().invoke(main, ["evaluate", str(polymer_file), "--model", str(out), "--horizons", "a"]),
                      "--horizons")


def test_extrapolate_with_model(trained_file, polymer_file, tmp_path):
    out, _, _ = trained_file
    target = tmp_path / "next.dcd"
    run("extrapolate", polymer_file, "--model", out, "-n", 7, "-o", target)
    source = mdnext.load(polymer_file)
    written = mda.Universe(str(_pdb_topology(source, tmp_path)), str(target))
    assert written.trajectory.n_frames == 7
    assert written.trajectory.dt == pytest.approx(0.00125, rel=1e-5)
    assert written.trajectory[0].time == pytest.approx(source.times[-1] + 0.00125, rel=1e-5)


def _pdb_topology(frames, tmp_path):
    path = tmp_path / "top.pdb"
    mdnext.save(frames[-1], path)
    return path


def test_extrapolate_bad_input(trained_file, polymer_file, tmp_path):
    out, _, _ = trained_file
    existing = tmp_path / "exists.xyz"
    existing.write_text("keep")
    cases = [
        (["-n", "0", "-o", str(tmp_path / "a.xyz")], ["-n"]),
        (["-n", "-3", "-o", str(tmp_path / "a.xyz")], ["-n"]),
        (["-n", "5", "-o", str(tmp_path / "a.unknownext")], ["no writer"]),
        (["-n", "5", "-o", str(existing)], ["exists"]),
    ]
    for extra, fragments in cases:
        result = CliRunner().invoke(main, ["extrapolate", str(polymer_file), "--model", str(out), *extra])
        assert_user_error(result, *fragments)
    assert existing.read_text() == "keep"
    assert not (tmp_path / "a.xyz").exists() and not (tmp_path / "a.unknownext").exists()
    short = tmp_path / "short.npz"
    mdnext.save(mdnext.load(polymer_file)[:2], short)
    assert_user_error(CliRunner().invoke(main, ["extrapolate", str(short), "--model", str(out), "-n", "3",
                                                "-o", str(tmp_path / "b.xyz")]), "history")
    other = tmp_path / "other.npz"
    frames = mdnext.load(polymer_file)
    mdnext.save(frames.replace(species=np.array(["Ar"] * 12)), other)
    assert_user_error(CliRunner().invoke(main, ["extrapolate", str(other), "--model", str(out), "-n", "3",
                                                "-o", str(tmp_path / "c.xyz")]), "Ar")


def test_extrapolate_foreign_xyz_without_model(tmp_path):
    """Issue 4: `mdnext extrapolate traj.xyz -n 50 -o next.xyz` on a file mdnext did not write."""
    from ase.io import read

    target = tmp_path / "next.xyz"
    result = run("extrapolate", XYZ, "-n", 50, "-o", target, "--epochs", 2, "-q")
    assert "autoregressive" in result.output and "test MSE" in result.output
    source = mda.Universe(XYZ)
    written = mda.Universe(str(target))
    assert written.trajectory.n_frames == 50
    assert list(written.atoms.names) == list(source.atoms.names)
    images = read(target, ":")
    assert len(images) == 50
    assert images[0].get_chemical_symbols() == list(source.atoms.names)
    np.testing.assert_allclose(written.trajectory[0].positions, images[0].positions, atol=1e-3)


def test_extrapolated_dcd_carries_dt_box_and_continuing_time(tmp_path):
    """Issue 4: a DCD written by extrapolate has dt and box, its time continues the input's."""
    rng = np.random.default_rng(1)
    box = np.diag([12.0, 13.0, 14.0])
    positions = np.cumsum(rng.normal(scale=0.05, size=(60, 5, 3)), axis=0) + rng.uniform(0, 12, size=(5, 3))
    frames = mdnext.Frames(positions=positions, species=["Ar"] * 5, cell=box, pbc=True, dt=0.02,
                           time=5.0 + 0.02 * np.arange(60))
    source = tmp_path / "in.npz"
    mdnext.save(frames.wrapped(), source)
    model_path = tmp_path / "ar.pt"
    mdnext.train(mdnext.load(source), "autoregressive", history=3).save(model_path)
    target = tmp_path / "next.dcd"
    run("extrapolate", source, "--model", model_path, "-n", 10, "-o", target, "--wrap")
    u = mda.Universe(str(_pdb_topology(frames, tmp_path)), str(target))
    assert u.trajectory.n_frames == 10
    assert u.trajectory.dt == pytest.approx(0.02, rel=1e-5)
    assert u.trajectory[0].time == pytest.approx(5.0 + 0.02 * 60, rel=1e-5)
    np.testing.assert_allclose(u.trajectory[0].dimensions, [12, 13, 14, 90, 90, 90], rtol=1e-6)
    assert np.all(u.trajectory[-1].positions >= -1e-4) and np.all(u.trajectory[-1].positions < 14.0)


def test_extrapolate_fits_and_keeps_its_model(polymer_file, tmp_path):
    kept = tmp_path / "fitted.pt"
    target = tmp_path / "next.extxyz"
    result = run("extrapolate", polymer_file, "-n", 5, "-o", target, "--save-model", kept, "--epochs", 1, "-q",
                 "--include-input")
    assert "constant_acceleration" in result.output
    written = mdnext.load(target)
    assert written.n_frames == 400 + 5
    from mdnext.checkpoint import TrainedModel

    trained = TrainedModel.load(kept)
    assert trained.model.name == "equivariant" and trained.history == 4
    again = mdnext.extrapolate(trained, mdnext.load(polymer_file), 5)
    np.testing.assert_allclose(written.positions[400:], again.positions, atol=1e-6)


def test_train_through_the_cache_on_a_window_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("MDNEXT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "ca.pt"
    args = ["train", DCD, "-t", PSF, "--select", "name CA", "--cache", "--max-windows", "12", "-k", "2",
            "--epochs", "1", "--batch-size", "4", "-q", "-o", out, "--metrics", tmp_path / "m.json"]
    run(*args)
    assert len(list((tmp_path / "cache").glob("*.f64"))) == 1  # positions cached once, memory-mapped
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["splits"]["train"] == 12 and 0 < metrics["splits"]["test"] <= 12
    assert TrainedModel.load(out).training["config"]["max_windows"] == 12
