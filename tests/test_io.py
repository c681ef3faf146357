"""Format routing, npz round trips and atomic, non-clobbering writes."""

from pathlib import Path

import numpy as np
import pytest

import mdnext
from mdnext.errors import InputError, OutputError
from mdnext.io import format_from_path


@pytest.mark.parametrize(
    "name, fmt",
    [("a.dcd", "dcd"), ("a.XYZ", "xyz"), ("a.xyz.bz2", "xyz"), ("dir.v1/a.pdb.gz", "pdb"), ("noext", "")],
)
def test_format_from_path(name, fmt):
    assert format_from_path(name) == fmt


def test_tutorial_npz(tutorial_paths):
    frames = mdnext.load(tutorial_paths)
    assert (frames.n_frames, frames.n_atoms) == (2048, 12)
    raw = np.load(tutorial_paths)["arr"]
    np.testing.assert_array_equal(frames.positions[..., :2], raw)
    assert np.all(frames.positions[..., 2] == 0)
    assert frames.source["reader"] == "npz"


def test_npz_round_trip_keeps_everything(small_frames, tmp_path):
    path = mdnext.save(small_frames, tmp_path / "x.npz")
    back = mdnext.load(path)
    np.testing.assert_array_equal(back.positions, small_frames.positions)
    np.testing.assert_array_equal(back.cell, small_frames.cell)
    assert list(back.species) == list(small_frames.species)
    assert back.dt == small_frames.dt and back.pbc.all()
    np.testing.assert_array_equal(back.masses, small_frames.masses)
    assert list(back.atoms["names"]) == ["OW", "HW1", "HW2"]


def test_stride_and_dt_override(small_frames, tmp_path):
    path = mdnext.save(small_frames, tmp_path / "x.npz")
    frames = mdnext.load(path, stride=2, dt=0.5)
    assert frames.n_frames == 3 and frames.dt == pytest.approx(1.0)
    with pytest.raises(InputError, match="stride"):
        mdnext.load(path, stride=0)


def test_existing_output_is_not_overwritten(small_frames, tmp_path):
    path = tmp_path / "x.npz"
    path.write_bytes(b"precious")
    with pytest.raises(OutputError, match="exists"):
        mdnext.save(small_frames, path)
    assert path.read_bytes() == b"precious"
    mdnext.save(small_frames, path, overwrite=True)
    assert mdnext.load(path).n_frames == 5


def test_failed_write_leaves_nothing(small_frames, tmp_path, monkeypatch):
    from mdnext.plugins.npz import NpzWriter

    def exploding_write(self, frames, path, fmt):
        Path(path).write_bytes(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(NpzWriter, "write", exploding_write)
    target = tmp_path / "x.npz"
    target.write_bytes(b"old")
    with pytest.raises(OutputError, match="disk full"):
        mdnext.save(small_frames, target, overwrite=True)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.npz", None, "no such file"),
        ("x.unknownext", b"1", "no reader for format 'unknownext'"),
        ("bad.npz", b"not a zip", "bad.npz"),
        ("other.npz", "wrongkey", "expected key 'arr'"),
        ("nan.npz", "nan", "non-finite"),
    ],
)
def test_bad_input_is_one_line_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content == "wrongkey":
        np.savez(path, other=np.zeros((2, 2, 2)))
    elif content == "nan":
        np.savez(path, arr=np.full((2, 3, 2), np.nan))
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        mdnext.load(path)
    text = str(info.value)
    assert message in text and name in text and "\n" not in text


def test_unknown_output_format(small_frames, tmp_path):
    with pytest.raises(OutputError, match="no writer for format 'nope'"):
        mdnext.save(small_frames, tmp_path / "x.nope")
    assert not list(tmp_path.iterdir())
