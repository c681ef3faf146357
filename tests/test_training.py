"""mdnext.train end to end on small data: metrics, determinism, checkpoints and resume."""

import json

import numpy as np
import pytest
import torch

import mdnext
from mdnext.api import resume_path
from mdnext.checkpoint import FORMAT_VERSION, TrainedModel, read_checkpoint
from mdnext.errors import InputError
from mdnext.trainer import TrainConfig

from conftest import BUNDLED_PATHS

BASELINE_NAMES = {"zero", "constant_velocity", "constant_acceleration", "autoregressive", "centred_autoregressive", "linear"}


@pytest.fixture(scope="module")
def polymer():
    """The first 300 frames of the bundled polymer (dt 1.25 fs)."""
    return mdnext.load(BUNDLED_PATHS, dt=0.00125)[:300]


def small_config(**kw):
    return TrainConfig(**{"epochs": 3, "batch_size": 16, "quiet": True, **kw})


def test_linear_training_reports_every_baseline(polymer):
    trained = mdnext.train(polymer, "linear", history=0, config=small_config(), horizons=(1, 10))
    metrics = trained.metrics
    assert set(metrics["baselines"]) == BASELINE_NAMES
    assert set(metrics["rollout_rmsd"]) == {"1", "10"}
    assert metrics["epochs"] == 3 and metrics["train_seconds"] > 0
    assert metrics["splits"]["test"] > 0 and metrics["splits"]["train"] > metrics["splits"]["test"]
    # the tutorial's linear model is not rotation-equivariant, the baselines are
    assert metrics["equivariance_error_relative"] > 1e-2
    assert metrics["baseline_equivariance_error"]["autoregressive"] < 1e-12
    # constant acceleration beats standing still on this smooth trajectory
    assert metrics["baselines"]["constant_acceleration"] < 1e-2 * metrics["baselines"]["zero"]
    json.dumps(metrics)  # plain data


def test_baseline_metrics_match_hand_computation(polymer):
    trained = mdnext.train(polymer, "constant_velocity", history=1, config=small_config(), horizons=(1,))
    x = polymer.positions
    d = np.diff(x, axis=0)
    start = trained.metrics["splits"]
    # test windows: current frames t with t - 8 >= first test frame and t + 1 inside the test split
    first_test = 300 - round(0.2 * 300)
    t = np.arange(first_test + 8, 299)
    expected = np.mean((d[t] - d[t - 1]) ** 2)
    assert start["test"] == len(t)
    assert trained.metrics["mse"] == pytest.approx(expected, rel=1e-12)
    assert trained.metrics["baselines"]["constant_velocity"] == pytest.approx(expected, rel=1e-12)


def test_same_seed_same_metrics(polymer):
    """Bit for bit. On one thread: with two threads on a machine busy with other work, a
    multi-threaded reduction in the backward pass rounded one weight of layer 0 one ulp apart
    in about 1 of 10 repeats (two busy loops on two cores), though never on an idle machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = [mdnext.train(polymer, "equivariant", history=2, config=small_config(epochs=2), horizons=(1,))
                for _ in range(2)]
    finally:
        torch.set_num_threads(threads)
    assert runs[0].metrics["mse"] == runs[1].metrics["mse"]
    for a, b in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values()):
        assert torch.equal(a, b)


class Interrupt(Exception):
    pass


def test_resume_after_interruption_matches_uninterrupted_run(polymer, tmp_path, monkeypatch):
    config = small_config(epochs=4)
    reference = mdnext.train(polymer, "equivariant", history=2, config=config, horizons=(1,),
                             output=tmp_path / "ref.pt")
    output = tmp_path / "model.pt"

    import mdnext.trainer as trainer

    original = trainer._train_epoch
    calls = {"n": 0}

    def dying_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupt("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "_train_epoch", dying_epoch)
    with pytest.raises(Interrupt):
        mdnext.train(polymer, "equivariant", history=2, config=config, horizons=(1,), output=output)
    assert not output.exists()
    last = read_checkpoint(resume_path(output))
    assert last["resume"]["epoch"] == 2
    monkeypatch.setattr(trainer, "_train_epoch", original)

    resumed = mdnext.train(polymer, "equivariant", history=2, config=config, horizons=(1,), output=output,
                           resume=True)
    assert resumed.metrics["epochs"] == 4
    assert not resume_path(output).exists()
    again = TrainedModel.load(output)
    assert again.metrics["mse"] == pytest.approx(reference.metrics["mse"], rel=1e-12)
    for a, b in zip(again.model.state_dict().values(), reference.model.state_dict().values()):
        assert torch.equal(a, b)


def test_fine_tuning_keeps_the_prior_and_never_ends_worse_than_it_started(polymer, tmp_path, monkeypatch):
    start = tmp_path / "start.pt"
    mdnext.train(polymer, "equivariant", history=2, config=small_config(epochs=2), horizons=(1,), output=start)
    initial = TrainedModel.load(start).model.state_dict()

    import mdnext.trainer as trainer

    original = trainer._mean_loss
    calls = []

    def worse_after_start(*args, **kwargs):  # the loss scale and the start's score, then worse epochs
        calls.append(1)
        return original(*args, **kwargs) * (1.0 if len(calls) <= 2 else 10.0)

    monkeypatch.setattr(trainer, "_mean_loss", worse_after_start)
    tuned = mdnext.train(polymer, "equivariant", history=2, config=small_config(epochs=2, unroll=3), horizons=(1,),
                         init=start, output=tmp_path / "tuned.pt")
    assert tuned.metrics["best_epoch"] == 0 and tuned.metrics["epochs"] == 2
    assert tuned.training["init"] == str(start)
    for name, value in tuned.model.state_dict().items():
        assert torch.equal(value, initial[name]), name

    monkeypatch.setattr(trainer, "_mean_loss", original)
    refitted = []
    monkeypatch.setattr(type(tuned.model), "fit_closed_form", lambda *a: refitted.append(a))
    useful = mdnext.train(polymer, "equivariant", history=2, config=small_config(epochs=2, unroll=3), horizons=(1,),
                          init=start)
    assert refitted == []
    prior = {k: v for k, v in useful.model.state_dict().items() if k.startswith("prior_model.")}
    assert prior and all(torch.equal(v, initial[k]) for k, v in prior.items())


def test_fine_tuning_refuses_another_setup(polymer, tmp_path):
    start = tmp_path / "start.pt"
    mdnext.train(polymer, "equivariant", history=2, config=small_config(epochs=1), horizons=(1,), output=start)
    with pytest.raises(InputError, match="start.pt: holds model 'equivariant' with history 2 and stride 1, "
                                         "not 'equivariant' with history 3"):
        mdnext.train(polymer, "equivariant", history=3, config=small_config(epochs=1), init=start)
    with pytest.raises(InputError, match="no such model file"):
        mdnext.train(polymer, "equivariant", history=2, config=small_config(epochs=1), init=tmp_path / "none.pt")
    # --resume checks the interrupted run's checkpoint the same way (stride included)
    output = tmp_path / "run.pt"
    TrainedModel.load(start).save(resume_path(output), extra={"resume": {"epoch": 1}})
    with pytest.raises(InputError, match="with history 2 and stride 1, not 'equivariant' with history 2 and "
                                         "stride 2; start afresh without --resume"):
        mdnext.train(polymer, "equivariant", history=2, stride=2, config=small_config(epochs=1), output=output,
                     resume=True)


def test_checkpoint_is_safe_and_refuses_pickles(polymer, tmp_path):
    trained = mdnext.train(polymer, "linear", history=0, config=small_config(epochs=1), horizons=(1,))
    path = trained.save(tmp_path / "lin.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["model"] == "linear" and raw["format_version"] == FORMAT_VERSION and "torch" in raw["versions"]
    back = TrainedModel.load(path)
    assert back.stride == 1 and back.dt == pytest.approx(0.00125)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format_version": 1, "model": "linear", "payload": Interrupt("x")}, unsafe)
    with pytest.raises(InputError, match="not a safe mdnext checkpoint"):
        TrainedModel.load(unsafe)
    not_ours = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, not_ours)
    with pytest.raises(InputError, match="not an mdnext checkpoint"):
        TrainedModel.load(not_ours)


def test_format_1_equivariant_checkpoints_are_refused(polymer, tmp_path):
    """Format 2 reordered the equivariant layers' weights (same shapes): old files must not load silently."""
    trained = mdnext.train(polymer, "equivariant", history=2, config=small_config(epochs=1), horizons=(1,))
    path = trained.save(tmp_path / "eq.pt")
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = 1
    torch.save(raw, path)
    with pytest.raises(InputError, match="checkpoint format 1.*train it again"):
        TrainedModel.load(path)


def test_existing_output_and_bad_resume(polymer, tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(b"keep")
    with pytest.raises(Exception, match="exists"):
        mdnext.train(polymer, "linear", history=0, config=small_config(), output=out)
    assert out.read_bytes() == b"keep"
    with pytest.raises(InputError, match="no such model file"):
        mdnext.train(polymer, "linear", history=0, config=small_config(), output=tmp_path / "n.pt", resume=True)


def test_plots_are_written(polymer, tmp_path):
    mdnext.train(polymer, "linear", history=0, config=small_config(epochs=2), horizons=(1, 5), plots=tmp_path)
    for name in ("loss.png", "parity.png", "rollout.png"):
        assert (tmp_path / name).stat().st_size > 1000
