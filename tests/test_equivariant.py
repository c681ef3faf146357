"""The e3nn model: O(3) and translation equivariance, permutations, priors, rebuild, training."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3
from e3nn.util.test import assert_equivariant
from torch_geometric.data import Batch, Data

from mdnext.errors import MDNextError
from mdnext.models.equivariant import EquivariantModel

F64 = torch.float64
TRICLINIC = torch.tensor([[7.0, 0.0, 0.0], [1.5, 7.5, 0.0], [-1.0, 2.0, 8.0]], dtype=F64)
SPECIES = ["A", "B"]


def window(n: int, k: int, seed: int, cell: torch.Tensor | None = None, spread: float = 4.0) -> Data:
    """One random window; y follows an AR(2) law plus noise so that the fitted prior is non-trivial."""
    g = torch.Generator().manual_seed(seed)
    periodic = cell is not None
    pos = torch.rand(n, 3, generator=g, dtype=F64)
    pos = pos @ cell if periodic else spread * pos
    history = 0.1 * torch.randn(n, k, 3, generator=g, dtype=F64)
    y = 0.02 * torch.randn(n, 3, generator=g, dtype=F64)
    if k >= 2:
        y = y + 0.8 * history[:, 0] - 0.3 * history[:, 1]
    return Data(
        pos=pos,
        history=history,
        species=torch.randint(0, len(SPECIES), (n,), generator=g),
        cell=(cell if periodic else torch.zeros(3, 3, dtype=F64)).reshape(1, 3, 3),
        pbc=torch.full((1, 3), periodic),
        y=y,
    )


def fitted_model(k: int = 3, random_head: bool = True, **hparams) -> EquivariantModel:
    """A model fitted on a few random windows, with a random (non-zero) output head."""
    torch.manual_seed(0)
    model = EquivariantModel(history=k, species=SPECIES, cutoff=4.0, **hparams)
    model.fit_closed_form([Batch.from_data_list([window(10, k, seed) for seed in range(4)])])
    if random_head:
        torch.nn.init.normal_(model.head.weight)
    return model.eval()


def rotate(data: Data, matrix: torch.Tensor, shift: torch.Tensor | None = None) -> Data:
    """Apply x -> R x (+ shift) to positions, history and cell rows."""
    out = data.clone()
    out.pos = data.pos @ matrix.T + (0.0 if shift is None else shift)
    out.history = data.history @ matrix.T
    out.cell = data.cell @ matrix.T
    return out


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max())


def test_assert_equivariant_rotation_reflection_translation():
    model = fitted_model(k=3)
    species = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])

    def func(pos: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        data = Data(
            pos=pos,
            history=history.reshape(-1, 3, 3),
            species=species,
            cell=torch.zeros(1, 3, 3, dtype=F64),
            pbc=torch.zeros(1, 3, dtype=torch.bool),
        )
        return model(data)

    sample = window(8, 3, seed=10)
    args = [sample.pos, sample.history.reshape(8, 9)]
    scale = float(func(*args).detach().abs().max())
    assert scale > 0.05
    errors = assert_equivariant(
        func, args, irreps_in=["cartesian_points", "3x1o"], irreps_out=["1x1o"], tolerance=1e-5 * scale, ntrials=3
    )
    assert set(errors) == {(0, False), (0, True), (1, False), (1, True)}


@pytest.mark.parametrize("parity", [1.0, -1.0], ids=["rotation", "reflection"])
def test_batch_equivariance_without_box(parity):
    model = fitted_model(k=3)
    data = Batch.from_data_list([window(9, 3, seed=20), window(14, 3, seed=21)])
    out = model(data)
    for seed in range(3):
        torch.manual_seed(seed)
        matrix = parity * o3.rand_matrix(dtype=F64)
        shift = 10 * torch.randn(1, 3, dtype=F64)
        assert relative_error(model(rotate(data, matrix, shift)), out @ matrix.T) < 1e-5


def test_reflection_with_odd_scalars_and_pseudovectors():
    """Hidden 0o (tanh-activated) and 1e features must still give an O(3)-equivariant output."""
    model = fitted_model(k=3, hidden_irreps="8x0e + 4x0o + 4x1o + 4x1e + 2x2e")
    data = Batch.from_data_list([window(9, 3, seed=25), window(12, 3, seed=26)])
    out = model(data)
    torch.manual_seed(3)
    matrix = -o3.rand_matrix(dtype=F64)
    assert relative_error(model(rotate(data, matrix)), out @ matrix.T) < 1e-5


@pytest.mark.parametrize("parity", [1.0, -1.0], ids=["rotation", "reflection"])
def test_batch_equivariance_periodic_triclinic(parity):
    model = fitted_model(k=3)
    data = Batch.from_data_list([window(16, 3, seed=30, cell=TRICLINIC), window(11, 3, seed=31, cell=0.9 * TRICLINIC)])
    out = model(data)
    torch.manual_seed(1)
    matrix = parity * o3.rand_matrix(dtype=F64)
    assert relative_error(model(rotate(data, matrix, 10 * torch.randn(1, 3, dtype=F64))), out @ matrix.T) < 1e-5


def test_translation_and_lattice_shifts_change_nothing_under_pbc():
    model = fitted_model(k=3)
    data = window(16, 3, seed=40, cell=TRICLINIC)
    out = model(data)
    moved = data.clone()
    moved.pos = data.pos + torch.tensor([3.3, -1.2, 40.0], dtype=F64)
    assert relative_error(model(moved), out) < 1e-5
    # Unwrapped coordinates: atoms displaced by whole lattice vectors.
    unwrapped = data.clone()
    unwrapped.pos = data.pos.clone()
    unwrapped.pos[::2] += torch.tensor([2.0, -3.0, 1.0], dtype=F64) @ TRICLINIC
    assert relative_error(model(unwrapped), out) < 1e-5


@pytest.mark.parametrize("cell", [None, TRICLINIC], ids=["open", "periodic"])
def test_permutation_equivariance(cell):
    model = fitted_model(k=3)
    data = window(15, 3, seed=50, cell=cell)
    perm = torch.randperm(15, generator=torch.Generator().manual_seed(0))
    permuted = data.clone()
    for key in ("pos", "history", "species", "y"):
        permuted[key] = data[key][perm]
    assert relative_error(model(permuted), model(data)[perm]) < 1e-5


def test_output_depends_on_neighbours_and_species():
    """A test that equivariance is not met trivially: the residual varies with the graph."""
    model = fitted_model(k=3)
    data = window(10, 3, seed=60)
    residual = (model(data) - model.prior_model(data)).detach()
    assert float(residual.abs().max()) > 1e-3
    moved = data.clone()
    moved.pos = data.pos.clone()
    moved.pos[0] += 0.3
    assert not torch.allclose(model(moved)[1:], model(data)[1:])
    swapped = data.clone()
    swapped.species = 1 - data.species
    assert not torch.allclose(model(swapped), model(data))


def test_zero_head_is_exactly_the_prior():
    model = fitted_model(k=3, random_head=False)
    assert not torch.allclose(model.prior_model.relative_coefficients, torch.tensor([1.0, 0.0, 0.0], dtype=F64))
    data = Batch.from_data_list([window(9, 3, seed=70), window(12, 3, seed=71, cell=TRICLINIC)])
    out = model(data)
    assert out.dtype == F64
    assert torch.equal(out, model.prior_model(data))


def test_centred_residual_leaves_each_centroid_to_the_prior():
    data = Batch.from_data_list([window(9, 3, seed=72), window(12, 3, seed=73, cell=TRICLINIC)])
    model = fitted_model(k=3)
    assert model.centred_residual and model.hparams["centred_residual"] is True
    residual = (model(data) - model.prior_model(data)).detach()
    assert float(residual.abs().max()) > 1e-3
    for structure in range(2):
        assert float(residual[data.batch == structure].mean(0).abs().max()) < 1e-15
    free = fitted_model(k=3, centred_residual=False)
    free_residual = (free(data) - free.prior_model(data)).detach()
    assert float(free_residual[data.batch == 0].mean(0).abs().max()) > 1e-5
    assert not EquivariantModel(history=2, species=SPECIES, prior="autoregressive").centred_residual


def test_fitted_statistics():
    model = fitted_model(k=3, random_head=False)
    data = Batch.from_data_list([window(10, 3, seed) for seed in range(4)])
    assert torch.isclose(model.displacement_scale, data.history.square().mean().sqrt())
    residual = data.y - model.prior_model(data)
    assert torch.isclose(model.residual_scale, residual.square().mean().sqrt())
    assert float(model.residual_scale) < float(data.y.square().mean().sqrt())
    assert 1.0 < float(model.avg_num_neighbors) < 9.0


def test_reads_only_its_own_history():
    model = fitted_model(k=2)
    data = window(10, 5, seed=80)
    short = data.clone()
    short.history = data.history[:, :2]
    assert torch.equal(model(data), model(short))


def test_rebuild_from_hparams_and_safe_state_dict(tmp_path):
    model = fitted_model(k=3, hidden_irreps="8x0e + 4x1o + 2x2e", num_layers=1, num_basis=6, radial_hidden=8)
    data = Batch.from_data_list([window(9, 3, seed=90), window(12, 3, seed=91, cell=TRICLINIC)])
    path = tmp_path / "model.pt"
    torch.save({"hparams": model.hparams, "state_dict": model.state_dict()}, path)
    loaded = torch.load(path, weights_only=True)
    rebuilt = EquivariantModel(**loaded["hparams"])
    rebuilt.load_state_dict(loaded["state_dict"])
    rebuilt.eval()
    assert rebuilt.hparams == model.hparams
    assert all(isinstance(v, (int, float, str, list)) for v in model.hparams.values())
    assert torch.equal(rebuilt(data), model(data))
    assert float(rebuilt.residual_scale) == float(model.residual_scale) != 1.0
    # A model built from hparams alone (untrained) differs: the state really carries the fit.
    assert not torch.equal(EquivariantModel(**model.hparams)(data), model(data))


def test_history_zero_with_zero_prior():
    model = fitted_model(k=0, prior="zero")
    assert model.prior == "zero"
    data = window(12, 0, seed=100)
    assert torch.isclose(model.displacement_scale, data.y.square().mean().sqrt(), rtol=0.5)
    out = model(data)
    assert out.shape == (12, 3) and out.dtype == F64 and float(out.detach().abs().max()) > 0
    torch.manual_seed(0)
    matrix = -o3.rand_matrix(dtype=F64)
    assert relative_error(model(rotate(data, matrix)), out @ matrix.T) < 1e-5
    assert EquivariantModel(history=0, species=SPECIES).prior == "zero"
    assert EquivariantModel(history=2, species=SPECIES).prior == "centred_autoregressive"


def test_bad_hparams_are_one_line_errors():
    with pytest.raises(MDNextError, match="needs history >= 1"):
        EquivariantModel(history=0, species=SPECIES, prior="autoregressive")
    with pytest.raises(MDNextError, match="unknown prior 'verlet'"):
        EquivariantModel(history=2, species=SPECIES, prior="verlet")
    with pytest.raises(MDNextError, match="hidden irreps 'eight scalars'"):
        EquivariantModel(history=2, species=SPECIES, hidden_irreps="eight scalars")
    with pytest.raises(MDNextError, match="must contain 0e and 1o"):
        EquivariantModel(history=2, species=SPECIES, hidden_irreps="8x0e + 4x2e")
    with pytest.raises(MDNextError, match="no training windows"):
        EquivariantModel(history=2, species=SPECIES).fit_closed_form([])


def test_default_size():
    model = EquivariantModel(history=8, species=["C"])
    assert 5_000 <= sum(p.numel() for p in model.parameters()) <= 20_000
    assert torch.count_nonzero(model.head.weight) == 0


def test_training_learns_an_equivariant_residual():
    """y = AR(1) part + a pairwise Gaussian spring toward neighbours: only the network can learn the spring."""
    torch.manual_seed(0)
    windows = []
    for seed in range(8):
        data = window(6, 2, seed=200 + seed, spread=3.0)
        diff = data.pos[None, :, :] - data.pos[:, None, :]
        weight = torch.exp(-diff.square().sum(-1) / 2.0)
        data.y = 0.6 * data.history[:, 0] + 0.05 * (weight[..., None] * diff).sum(1)
        windows.append(data)
    batch = Batch.from_data_list(windows)
    model = EquivariantModel(history=2, species=SPECIES, cutoff=4.0, hidden_irreps="8x0e + 4x1o", lmax=1)
    model.fit_closed_form([batch])
    with torch.no_grad():
        prior_loss = float((model(batch) - batch.y).square().mean())
    assert prior_loss > 0
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        optimiser.zero_grad()
        loss = ((model(batch) - batch.y) / model.residual_scale).square().mean()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        final = float((model(batch) - batch.y).square().mean())
    assert final < 0.05 * prior_loss
