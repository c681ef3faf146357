"""The on-disk trajectory cache (mdnext.cache) and chunked reading."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from MDAnalysisTests.datafiles import DCD, GRO, PSF, XTC
from mdnext.plugins.mdanalysis import MDAnalysisReader

import mdnext
from mdnext.cache import cache_key, load_cached
from mdnext.errors import InputError


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_cached_frames_equal_the_direct_read_and_are_memory_mapped(tmp_path) -> None:
    direct = mdnext.load(DCD, topology=PSF)
    cached = load_cached(DCD, topology=PSF, directory=tmp_path)
    assert isinstance(cached.positions, np.memmap)
    np.testing.assert_array_equal(np.asarray(cached.positions), direct.positions)
    assert cached.dt == direct.dt and cached.n_frames == 98 and cached.n_atoms == 3341
    np.testing.assert_array_equal(cached.species, direct.species)
    np.testing.assert_array_equal(cached.masses, direct.masses)
    np.testing.assert_array_equal(cached.atoms["resnames"], direct.atoms["resnames"])
    assert cached.source["path"] == DCD and cached.source["topology"] == PSF
    assert len(entries(tmp_path)) == 3  # .f64, .npz, .json


def test_a_box_and_times_survive_and_the_entry_is_reused(tmp_path) -> None:
    direct = mdnext.load(XTC, topology=GRO)
    first = mdnext.load(XTC, topology=GRO, cache=tmp_path)
    stamp = (tmp_path / f"{cache_key(XTC, 'xtc', GRO, None)}.f64").stat().st_mtime_ns
    again = mdnext.load(XTC, topology=GRO, cache=tmp_path)
    assert (tmp_path / f"{cache_key(XTC, 'xtc', GRO, None)}.f64").stat().st_mtime_ns == stamp
    for frames in (first, again):
        np.testing.assert_allclose(frames.cell, direct.cell)
        np.testing.assert_allclose(frames.times, direct.times)
        assert frames.is_periodic


def test_selection_and_changed_file_get_their_own_entries(tmp_path) -> None:
    source = tmp_path / "traj.dcd"
    source.write_bytes(Path(DCD).read_bytes())
    cache = tmp_path / "cache"
    calpha = load_cached(source, topology=PSF, select="name CA", directory=cache)
    assert calpha.n_atoms == 214
    load_cached(source, topology=PSF, directory=cache)
    assert len(entries(cache)) == 6
    os.utime(source, ns=(1, 1))  # a rewritten file: new modification time, new entry
    load_cached(source, topology=PSF, directory=cache)
    assert len(entries(cache)) == 9


def test_chunks_cover_the_trajectory_in_order() -> None:
    direct = mdnext.load(DCD, topology=PSF)
    pieces = list(MDAnalysisReader().read_chunks(Path(DCD), "dcd", topology=PSF, chunk_frames=40))
    assert [p.n_frames for p in pieces] == [40, 40, 18]
    np.testing.assert_array_equal(np.concatenate([p.positions for p in pieces]), direct.positions)
    np.testing.assert_allclose(np.concatenate([p.times for p in pieces]), direct.times)


def test_a_failed_build_leaves_no_entry(tmp_path) -> None:
    broken = tmp_path / "cut.dcd"
    data = Path(DCD).read_bytes()
    broken.write_bytes(data[: len(data) - 1000])
    with pytest.raises(InputError, match=r"cut\.dcd"):
        load_cached(broken, topology=PSF, directory=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or entries(tmp_path / "cache") == []


def test_an_interrupted_build_is_rebuilt(tmp_path) -> None:
    load_cached(DCD, topology=PSF, directory=tmp_path)
    meta = tmp_path / f"{cache_key(DCD, 'dcd', PSF, None)}.json"
    assert json.loads(meta.read_text())["shape"] == [98, 3341, 3]
    meta.unlink()  # as if the build had stopped before its last file
    rebuilt = load_cached(DCD, topology=PSF, directory=tmp_path)
    assert rebuilt.n_frames == 98 and meta.is_file()


def test_windows_from_a_cached_trajectory_match_the_in_memory_ones(tmp_path) -> None:
    direct = mdnext.load(DCD, topology=PSF, select="name CA")
    cached = mdnext.load(DCD, topology=PSF, select="name CA", cache=tmp_path)
    from mdnext.data import make_datasets, make_loader

    for a, b in zip(make_loader(make_datasets(direct, 3).train, 16), make_loader(make_datasets(cached, 3).train, 16)):
        assert np.array_equal(a.history.numpy(), b.history.numpy()) and np.array_equal(a.y.numpy(), b.y.numpy())
