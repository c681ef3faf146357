"""The force-matched bead-spring model and the equivariant model that uses the bond topology."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from mdnext.checkpoint import TrainedModel
from mdnext.data import make_datasets, make_loader
from mdnext.errors import MDNextError
from mdnext.frames import Frames
from mdnext.metrics import equivariance_error, evaluate_windows
from mdnext.models.baselines import CentredAutoregressive
from mdnext.models.equivariant import EquivariantModel
from mdnext.models.force_matched import ForceMatched, interpolate
from mdnext.polymer import ForceField, simulate_polymer
from mdnext.topology import chain_bonds


@functools.lru_cache(maxsize=1)
def verlet_chain() -> Frames:
    """A 2D bead-spring chain under velocity Verlet (no thermostat): deterministic dynamics."""
    positions = simulate_polymer(n_beads=8, n_frames=400, seed=3, friction=0.0, equilibration_steps=2000)
    return Frames(positions, np.array(["C"] * 8), bonds=chain_bonds(8))


def fitted(model, datasets):
    model.fit_closed_form(list(make_loader(datasets.train, 32)))
    return model.eval()


def test_interpolate_is_linear_between_knots_and_constant_outside():
    values = torch.tensor([0.0, 0.25, 0.75, 1.0, 2.0, -1.0], dtype=torch.float64)
    table = torch.tensor([0.0, 2.0, 1.0], dtype=torch.float64)
    found = interpolate(values, torch.tensor(0.0), torch.tensor(1.0), table)
    assert found.tolist() == [0.0, 1.0, 1.5, 1.0, 1.0, 0.0]


def test_force_matching_learns_the_chain_force_field():
    """On deterministic dynamics the fitted tables beat the best linear extrapolator by far,
    and the bond table vanishes at the force field's rest length."""
    datasets = make_datasets(verlet_chain(), history=4)
    loader = make_loader(datasets.test, 64)
    model = fitted(ForceMatched(4, ["C"], cutoff=1.0), datasets)
    linear = fitted(CentredAutoregressive(4, ["C"]), datasets)
    assert evaluate_windows(model, loader) < 0.02 * evaluate_windows(linear, loader)
    bond = model.tables[: model.knots].numpy()
    knots = np.linspace(*model.ranges[0].tolist(), model.knots)
    rest = np.interp(0.0, bond, knots)  # the table increases with r: pulls stretched bonds together
    assert np.all(np.diff(bond) > 0) and rest == pytest.approx(ForceField().bond_length, abs=0.01)


def test_features_times_tables_is_the_prediction_and_periodic_images_do_not_matter():
    """The least-squares features reproduce forward, and a chain wrapped into a periodic box
    (bonds crossing its faces) gives the same displacements as the unwrapped one."""
    frames = verlet_chain()
    box = np.diag([4.0, 4.0, 10.0])  # smaller than the chain's extent along x and y
    periodic = frames.replace(cell=box, pbc=[True, True, False])
    datasets = make_datasets(frames, history=2)
    model = fitted(ForceMatched(2, ["C"], cutoff=1.0), datasets)
    batch = next(iter(make_loader(datasets.test, 8)))
    terms, n = model._terms(batch), batch.pos.shape[0]
    features = model._features(terms, 0, n)
    expected = batch.history[:, 0] + torch.einsum("nka,k->na", features, model.tables)
    assert torch.allclose(model(batch), expected, rtol=0, atol=1e-15)
    # the fit builds the features a block of atoms at a time: the same rows
    assert torch.equal(torch.cat([model._features(terms, first, min(first + 5, n)) for first in range(0, n, 5)]),
                       features)
    wrapped = next(iter(make_loader(make_datasets(periodic.wrapped(), history=2).test, 8)))
    assert not torch.allclose(wrapped.pos, batch.pos)
    assert torch.allclose(model(wrapped), model(batch), rtol=0, atol=1e-12)


def test_force_matched_model_is_equivariant_and_needs_bonds():
    datasets = make_datasets(verlet_chain(), history=2)
    model = fitted(ForceMatched(2, ["C"], cutoff=1.0), datasets)
    batch = next(iter(make_loader(datasets.test, 8)))
    scale = float(batch.y.abs().max())
    assert equivariance_error(model, batch) < 1e-9 * scale  # rotations, reflections, permutations
    del batch.bond_index
    with pytest.raises(MDNextError, match="needs a bond topology.*--bonds chain"):
        model(batch)


def test_equivariant_model_with_bond_types(tmp_path):
    """Edge classes from the bonds, the force-matched prior by default, a permutation that moves
    the bonds along, and a checkpoint that round-trips."""
    datasets = make_datasets(verlet_chain(), history=2)
    torch.manual_seed(0)
    model = EquivariantModel(2, ["C"], cutoff=1.0, bond_types=True, hidden_irreps="8x0e + 4x1o", num_basis=4)
    assert model.prior == "force_matched" and model.centred_residual
    # tables shared by all species: not the default prior for several species
    assert EquivariantModel(2, ["C", "H"], bond_types=True).prior == "centred_autoregressive"
    model = fitted(model, datasets)
    for parameter in model.head.parameters():
        torch.nn.init.normal_(parameter)  # a random head, or the test compares the prior with itself
    batch = next(iter(make_loader(datasets.test, 8)))
    assert equivariance_error(model, batch) < 1e-5 * float(batch.y.abs().max())
    # the edge classes reach the network: with other bonds its part of the prediction changes
    rebonded = batch.clone()
    rebonded.bond_index = batch.bond_index[:, ::2]
    network = model(batch) - model.prior_model(batch)
    assert not torch.allclose(network, model(rebonded) - model.prior_model(rebonded))

    path = tmp_path / "model.pt"
    TrainedModel(model, 1, None, {}).save(path)
    loaded = TrainedModel.load(path).model
    assert loaded.hparams["bond_types"] and torch.equal(loaded(batch), model(batch))
    del batch.bond_index
    with pytest.raises(MDNextError, match="bond topology"):
        loaded.eval()(batch)
