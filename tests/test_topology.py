"""Bond lists on Frames and the bonded neighbourhoods on graphs (mdnext.topology, mdnext.bond_graph)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mdnext
from mdnext.bond_graph import angle_triplets, edge_separation
from mdnext.data import make_datasets
from mdnext.errors import FramesError
from mdnext.frames import Frames, concatenate
from mdnext.topology import bonds_within, chain_bonds, check_bonds, declare_bonds


def test_check_bonds_normalises_and_refuses_bad_lists():
    assert check_bonds([[2, 1], [0, 1], [1, 2]], 3).tolist() == [[0, 1], [1, 2]]
    assert check_bonds(np.zeros((0, 2), int), 3).shape == (0, 2)
    for bad, message in (([[0, 3]], r"in \[0, 3\)"), ([[1, 1]], "atom 1 is bonded to itself"),
                         ([0, 1], r"shape \(M, 2\)"), ([[0.0, 1.0]], "integer"), (np.zeros((0, 3), int), "shape")):
        with pytest.raises(FramesError, match=message):
            check_bonds(np.array(bad), 3)


def test_frames_carry_bonds_through_selection_and_slicing():
    frames = Frames(np.zeros((4, 5, 3)), np.array(list("ABCDE")), bonds=chain_bonds(5))
    assert frames[1:3].bonds.tolist() == chain_bonds(5).tolist()
    kept = frames.select_atoms([4, 3, 1])  # 3-4 stays bonded, renumbered; bonds to dropped atoms go
    assert kept.bonds.tolist() == [[0, 1]]
    assert bonds_within(chain_bonds(5), np.array([0, 2, 4]), 5).shape == (0, 2)
    with pytest.raises(FramesError, match="bond atom indices"):
        Frames(np.zeros((1, 2, 3)), np.array(["A", "B"]), bonds=[[0, 2]])


def test_declare_bonds():
    frames = Frames(np.zeros((2, 4, 3)), np.array(list("XXXX")), bonds=[[0, 2]])
    assert declare_bonds(frames, "topology").bonds.tolist() == [[0, 2]]
    assert declare_bonds(frames, "chain").bonds.tolist() == [[0, 1], [1, 2], [2, 3]]
    assert declare_bonds(frames, "none").bonds is None
    for wrong in ("ring", np.array([[0, 1]])):
        with pytest.raises(FramesError, match="bond source must be one of topology, chain, none"):
            declare_bonds(frames, wrong)
    with pytest.raises(FramesError, match="different bonds"):
        concatenate([frames, frames.replace(bonds=None)])
    assert concatenate([frames, frames]).bonds.tolist() == [[0, 2]]


def test_edge_separation_and_angles_by_hand():
    # 0-1-2-3 chain plus a branch 1-4: 1-3 pairs are (0,2), (2,4), (0,4), (1,3).
    bonds = torch.tensor([[0, 1], [1, 2], [2, 3], [1, 4]]).T
    edges = torch.tensor([[0, 1], [1, 0], [0, 2], [2, 4], [4, 0], [1, 3], [0, 3], [3, 4]]).T
    assert edge_separation(edges, bonds, 5).tolist() == [0, 0, 1, 1, 1, 1, 2, 2]
    assert sorted(map(tuple, angle_triplets(bonds, 5).T.tolist())) == [(0, 1, 2), (0, 1, 4), (1, 2, 3), (2, 1, 4)]
    # A triangle: every 1-3 pair is also bonded, and bonded wins.
    ring = torch.tensor([[0, 1], [1, 2], [0, 2]]).T
    assert edge_separation(torch.tensor([[0, 2], [2, 1]]).T, ring, 3).tolist() == [0, 0]
    assert edge_separation(edges, torch.zeros(2, 0, dtype=torch.long), 5).tolist() == [2] * 8


def test_batches_offset_the_bonds_of_each_structure():
    rng = np.random.default_rng(0)
    a = Frames(rng.normal(size=(30, 3, 3)), np.array(["C"] * 3), bonds=chain_bonds(3))
    b = Frames(rng.normal(size=(30, 4, 3)), np.array(["C"] * 4), bonds=[[0, 3]])
    datasets = make_datasets([a, b], history=1)
    picked = [0, len(datasets.train) - 1]  # a window of each trajectory
    batch = datasets.train.batch(picked)
    assert batch.bond_index.tolist() == [[0, 1, 3], [1, 2, 6]]
    # torch_geometric's own collation of single windows gives the same
    from torch_geometric.data import Batch

    collated = Batch.from_data_list([datasets.train[i] for i in picked])
    assert torch.equal(collated.bond_index, batch.bond_index)
    # without bonds on every trajectory, windows carry none
    plain = make_datasets([a, b.replace(bonds=None)], history=1).train.batch(picked)
    assert getattr(plain, "bond_index", None) is None


def test_npz_and_pdb_round_trips_keep_bonds(tmp_path):
    frames = Frames(np.random.default_rng(1).normal(size=(3, 4, 3)), np.array(list("CCCC")), bonds=[[0, 1], [2, 3]])
    mdnext.save(frames, tmp_path / "t.npz")
    assert mdnext.load(tmp_path / "t.npz").bonds.tolist() == [[0, 1], [2, 3]]
    mdnext.save(frames, tmp_path / "t.pdb")  # CONECT records
    assert mdnext.load(tmp_path / "t.pdb").bonds.tolist() == [[0, 1], [2, 3]]
    assert mdnext.load(tmp_path / "t.npz", bonds="none").bonds is None


def test_mdanalysis_topology_bonds(tmp_path):
    datafiles = pytest.importorskip("MDAnalysisTests.datafiles")
    frames = mdnext.load(datafiles.DCD, topology=datafiles.PSF, select="resid 1:2")
    import MDAnalysis as mda

    universe = mda.Universe(datafiles.PSF, datafiles.DCD)
    group = universe.select_atoms("resid 1:2")
    expected = sorted(tuple(sorted(group.indices.tolist().index(i) for i in bond.indices)) for bond in group.intra_bonds)
    assert frames.bonds.tolist() == [list(pair) for pair in expected]
    cached = mdnext.load(datafiles.DCD, topology=datafiles.PSF, select="resid 1:2", cache=tmp_path)
    assert cached.bonds.tolist() == frames.bonds.tolist()  # the on-disk cache keeps them
    assert mdnext.load(datafiles.DCD, topology=datafiles.PSF, select="name CA").bonds is None  # no CA-CA bonds
    assert mdnext.load(datafiles.XTC, topology=datafiles.GRO).bonds is None  # GRO names no bonds
