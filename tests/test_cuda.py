"""``--device cuda``: training, checkpoints and extrapolation on a GPU (skipped without one),
and a one-line error where there is none.

GPU against CPU: the same seed and data give the same run up to float32 rounding (other
kernels, atomic sums in a different order); after 3 epochs that stays far below 1e-3 of each
weight tensor's scale, the bound used here. Extrapolated positions are float64 sums of the
float64 prior and a residual scaled to the data's displacement size, so they agree to 1e-6 Å.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import mdnext
from mdnext.checkpoint import TrainedModel, build_model
from mdnext.cli import main
from mdnext.data import make_datasets
from mdnext.errors import MDNextError
from mdnext.trainer import TrainConfig, fit

from conftest import BUNDLED_PATHS

MODEL = {"hidden_irreps": "4x0e + 2x1o", "num_layers": 1, "radial_hidden": 8}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
without_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")


@pytest.fixture(scope="module")
def polymer():
    return mdnext.load(BUNDLED_PATHS, dt=0.00125)[:300]


def config(device: str, **kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "batch_size": 8, "quiet": True, "device": device, **kw})


@needs_cuda
def test_fit_keeps_model_prior_and_buffers_on_the_gpu(polymer):
    datasets = make_datasets(polymer, history=2)
    torch.manual_seed(0)
    model = build_model("equivariant", {"history": 2, "species": datasets.species, **MODEL})
    state = fit(model, datasets.train, datasets.val, config("cuda", unroll=2))
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    assert {t.device.type for t in tensors.values()} == {"cuda"}
    assert model.prior_model.relative_coefficients.dtype == torch.float64
    assert len(state.log) == 3 and all(np.isfinite(e["train_loss"]) for e in state.log)
    assert all(t.device.type == "cpu" for t in state.best_state.values())


@needs_cuda
def test_train_save_load_extrapolate_on_cuda(polymer, tmp_path):
    path = tmp_path / "gpu.pt"
    on_gpu = mdnext.train(polymer, "equivariant", history=2, model_options=MODEL, config=config("cuda"),
                          horizons=(1, 10), output=path)
    on_cpu = mdnext.train(polymer, "equivariant", history=2, model_options=MODEL, config=config("cpu"),
                          horizons=(1, 10))
    assert on_gpu.metrics["epochs"] == 3 and np.isfinite(on_gpu.metrics["mse"])
    assert on_gpu.metrics["mse"] == pytest.approx(on_cpu.metrics["mse"], rel=1e-3)
    reference = on_cpu.model.state_dict()
    for name, value in on_gpu.model.state_dict().items():
        if value.is_floating_point() and value.numel():
            scale = float(reference[name].abs().max())
            assert float((value - reference[name]).abs().max()) <= 1e-3 * scale, name

    loaded = TrainedModel.load(path)  # written from a cuda model, read on the CPU
    assert {t.device.type for t in loaded.model.state_dict().values()} == {"cpu"}
    expected = mdnext.extrapolate(loaded, polymer, 20).positions
    loaded.model.to("cuda")
    future = mdnext.extrapolate(loaded, polymer, 20)
    assert next(loaded.model.parameters()).device.type == "cuda"
    np.testing.assert_allclose(future.positions, expected, rtol=0, atol=1e-6)


@needs_cuda
def test_cli_train_and_extrapolate_on_cuda(polymer, tmp_path):
    data, model, out = tmp_path / "poly.npz", tmp_path / "m.pt", tmp_path / "future.xyz"
    mdnext.save(polymer, data)
    runner = CliRunner()
    result = runner.invoke(main, ["train", str(data), "-k", "2", "--epochs", "2", "--device", "cuda", "-q",
                                  "-o", str(model)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["extrapolate", str(data), "--model", str(model), "--device", "cuda",
                                  "-n", "10", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert mdnext.load(out).n_frames == 10


@needs_two_gpus
def test_two_processes_on_two_gpus_train_like_one(tmp_path, polymer):
    from test_distributed import BATCH_SIZE, EPOCHS, N_FRAMES, launch

    single = mdnext.train(polymer[:N_FRAMES], "equivariant", history=2, model_options=MODEL, horizons=(1,),
                          config=config("cuda", epochs=EPOCHS, batch_size=BATCH_SIZE))
    result, out, ranks = launch(tmp_path, device="cuda")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["model.pt"]
    saved = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    for rank in range(2):
        state = torch.load(ranks / f"rank{rank}.pt", weights_only=True)
        assert all(torch.equal(state[name], value) for name, value in saved.items())
    for name, value in single.model.state_dict().items():
        if value.is_floating_point() and value.numel():
            assert float((saved[name] - value).abs().max()) <= 1e-4 * float(value.abs().max()), name


@without_cuda
def test_cuda_without_a_gpu_is_a_one_line_error(polymer, tmp_path):
    data, model = tmp_path / "poly.npz", tmp_path / "zero.pt"
    mdnext.save(polymer, data)
    TrainedModel(build_model("zero", {"history": 0, "species": ["X"]})).save(model)
    runner = CliRunner()
    for args in (["train", str(data), "--device", "cuda", "-o", str(tmp_path / "m.pt")],
                 ["extrapolate", str(data), "--model", str(model), "--device", "cuda", "-n", "2",
                  "-o", str(tmp_path / "f.xyz")]):
        result = runner.invoke(main, args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert lines[0].startswith("Error:") and "no CUDA device" in lines[0]
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "f.xyz").exists()
    with pytest.raises(MDNextError, match="no CUDA device"):
        mdnext.train(polymer, "linear", history=0, config=config("cuda"))
