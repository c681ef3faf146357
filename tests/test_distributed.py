"""Data-parallel training: 2 processes under torchrun (gloo, CPU) against 1 process.

The launched runs train the same tiny equivariant model as an in-process single-process run
and must end with the same weights within float32 rounding; rank 0 alone writes files, every
rank returns the same model and metrics, and a run killed after epoch 2 resumes to the same
result (``-m slow``).

Tolerance: every rank sees its share of each global batch and weights its loss so that the
averaged gradient is the global batch's, so the runs differ only by float32 rounding (other
matrix shapes per batch, a different summation order of the gradient). After 3 epochs (102
Adam steps) the largest weight difference measured 1e-7 of a tensor's largest entry (a few
float32 ulps); we allow 1e-5. Weighting the shares wrongly (a plain mean per process, which
DDP's gradient averaging gives for unequal shares) moved weights by up to 3e-2, so the check
has teeth: the training split (201 windows, batch 6) ends with a batch of 3 split 2/1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mdnext
from mdnext import distributed
from mdnext.errors import MDNextError
from mdnext.trainer import TrainConfig

from conftest import BUNDLED_PATHS

N_FRAMES = 300
EPOCHS = 3
BATCH_SIZE = 6
MODEL = {"hidden_irreps": "4x0e + 2x1o", "num_layers": 1, "radial_hidden": 8}
RELATIVE_TOLERANCE = 1e-5

WORKER = r'''
import json, os, sys
os.environ.setdefault("MKL_DYNAMIC", "FALSE")
import torch
import mdnext
import mdnext.checkpoint as checkpoint
import mdnext.trainer as trainer
from mdnext import distributed
from mdnext.trainer import TrainConfig

args = json.loads(sys.argv[1])
saves = []
original_save = checkpoint.save_checkpoint

def recording_save(path, *a, **k):
    saves.append(os.path.basename(str(path)))
    return original_save(path, *a, **k)

checkpoint.save_checkpoint = recording_save

def dump(metrics=None):
    rank = distributed.rank()
    with open(os.path.join(args["ranks"], f"rank{rank}.json"), "w") as handle:
        json.dump({"rank": rank, "world": distributed.world_size(), "saves": saves, "metrics": metrics}, handle)

if args.get("die_at_epoch"):  # a kill at the start of that epoch, once rank 0 has saved the last one
    original_epoch, calls = trainer._train_epoch, []

    def dying_epoch(*a, **k):
        calls.append(1)
        if len(calls) == args["die_at_epoch"]:
            distributed.barrier()
            dump()
            sys.stdout.flush()
            os._exit(3)
        return original_epoch(*a, **k)

    trainer._train_epoch = dying_epoch

frames = mdnext.load(args["data"], dt=0.00125)[: args["n_frames"]]
config = TrainConfig(epochs=args["epochs"], batch_size=args["batch_size"], quiet=True,
                     device=args.get("device", "cpu"))
trained = mdnext.train(frames, "equivariant", history=2, model_options=args["model"], config=config,
                       horizons=(1,), output=args["output"], resume=args.get("resume", False))
torch.save(trained.model.state_dict(), os.path.join(args["ranks"], f"rank{distributed.rank()}.pt"))
dump(trained.metrics)
'''


def torchrun(args: list[str], cwd: Path, timeout: float = 240.0) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node 2 ARGS`` (one thread each) in ``cwd``.

    Not in the repository root: there ``-m mdnext.cli`` would import the source tree, whose
    ``mdnext`` lacks the ``mdnext.plugins`` that only an installation maps in.
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", MKL_DYNAMIC="FALSE")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd)


def launch(tmp_path: Path, **options) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """Run the worker on 2 processes; returns the result, the output dir and the per-rank dir."""
    script, out, ranks = tmp_path / "worker.py", tmp_path / "out", tmp_path / "ranks"
    script.write_text(WORKER)
    out.mkdir(exist_ok=True)
    ranks.mkdir(exist_ok=True)
    for stale in ranks.iterdir():
        stale.unlink()
    args = {"data": str(BUNDLED_PATHS), "n_frames": N_FRAMES, "epochs": EPOCHS, "batch_size": BATCH_SIZE,
            "model": MODEL, "output": str(out / "model.pt"), "ranks": str(ranks), **options}
    return torchrun([str(script), json.dumps(args)], tmp_path), out, ranks


def ranks_report(ranks: Path) -> list[dict]:
    return [json.loads((ranks / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.fixture(scope="module")
def single():
    """The same training in this one process."""
    frames = mdnext.load(BUNDLED_PATHS, dt=0.00125)[:N_FRAMES]
    config = TrainConfig(epochs=EPOCHS, batch_size=BATCH_SIZE, quiet=True)
    return mdnext.train(frames, "equivariant", history=2, model_options=MODEL, config=config, horizons=(1,))


def assert_close_to_single(state: dict[str, torch.Tensor], single) -> None:
    reference = single.model.state_dict()
    assert state.keys() == reference.keys()
    for name, expected in reference.items():
        got = state[name]
        if not expected.is_floating_point() or expected.numel() == 0:
            assert torch.equal(got, expected), name
            continue
        scale = float(expected.abs().max())
        difference = float((got - expected).abs().max())
        assert difference <= RELATIVE_TOLERANCE * scale, f"{name}: differs by {difference:.3g} (scale {scale:.3g})"


def assert_finished_like_single(out: Path, ranks: Path, single) -> dict:
    """Rank 0 wrote the checkpoint; both ranks hold its weights and metrics; all match one process."""
    assert sorted(p.name for p in out.iterdir()) == ["model.pt"]  # no .last.pt, no temporary files
    reports = ranks_report(ranks)
    assert [r["world"] for r in reports] == [2, 2]
    assert reports[1]["saves"] == []
    assert reports[0]["metrics"] == reports[1]["metrics"]
    saved = torch.load(out / "model.pt", weights_only=True)
    states = [torch.load(ranks / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, value in saved["state_dict"].items():
        assert torch.equal(states[0][name], value) and torch.equal(states[1][name], value), name
    assert_close_to_single(saved["state_dict"], single)
    metrics = saved["training"]["metrics"]
    assert metrics["epochs"] == EPOCHS and metrics["splits"]["train"] % BATCH_SIZE == 3  # last batch split 2/1
    assert metrics["mse"] == pytest.approx(single.metrics["mse"], rel=1e-6)
    log, reference_log = saved["training"]["log"], single.training["log"]
    for key in ("train_loss", "val_loss", "lr"):
        assert [e[key] for e in log] == pytest.approx([e[key] for e in reference_log], rel=1e-6), key
    return reports[0]


def test_two_processes_train_like_one(tmp_path, single):
    result, out, ranks = launch(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = assert_finished_like_single(out, ranks, single)
    assert rank0["saves"] == ["model.pt.last.pt"] * EPOCHS + ["model.pt"]


@pytest.mark.slow  # two launches (~17 s on 2 cores); the default run has the uninterrupted one
def test_killed_two_process_run_resumes_like_one_process(tmp_path, single):
    result, out, ranks = launch(tmp_path, die_at_epoch=3)
    assert result.returncode != 0
    assert sorted(p.name for p in out.iterdir()) == ["model.pt.last.pt"]
    reports = ranks_report(ranks)
    assert reports[0]["saves"] == ["model.pt.last.pt"] * 2 and reports[1]["saves"] == []
    last = torch.load(out / "model.pt.last.pt", weights_only=True)
    assert last["resume"]["epoch"] == 2

    result, out, ranks = launch(tmp_path, resume=True)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0 = assert_finished_like_single(out, ranks, single)
    assert rank0["saves"] == ["model.pt.last.pt", "model.pt"]


def test_cli_under_torchrun_writes_once(tmp_path):
    data = tmp_path / "poly.npz"
    mdnext.save(mdnext.load(BUNDLED_PATHS, dt=0.00125)[:N_FRAMES], data)
    result = torchrun(["-m", "mdnext.cli", "train", str(data), "--model", "linear", "-k", "0", "--epochs", "2",
                       "--batch-size", "8", "-o", str(tmp_path / "lin.pt"), "--metrics", str(tmp_path / "m.json"),
                       "--plots", str(tmp_path / "plots"), "-q"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("training on 2 processes (torchrun, gloo)") == 1
    assert result.stdout.count("wrote ") == 1 and result.stdout.count("test MSE") == 1
    assert json.loads((tmp_path / "m.json").read_text())["epochs"] == 2
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["loss.png", "parity.png", "rollout.png"]
    assert mdnext.checkpoint.TrainedModel.load(tmp_path / "lin.pt").metrics["epochs"] == 2


def test_single_process_helpers_are_no_ops(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched() and not distributed.active()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.setup("cpu") == torch.device("cpu")
    assert distributed.broadcast({"a": 1}) == {"a": 1}
    assert distributed.all_reduce_sum([1, 2.5]) == [1.0, 2.5]
    assert distributed.run_on_main(lambda: 7) == 7
    assert distributed.shard(5) == range(5)
    distributed.barrier()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.launched()


def test_incomplete_torchrun_environment_is_one_line(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(distributed.DistributedError, match="launch with torchrun") as error:
        distributed.setup("cpu")
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("size, rank, expected", [(2, 0, range(3)), (2, 1, range(3, 5)), (3, 2, range(4, 5))])
def test_shards_are_contiguous_and_near_equal(monkeypatch, size, rank, expected):
    monkeypatch.setattr(distributed, "world_size", lambda: size)
    monkeypatch.setattr(distributed, "rank", lambda: rank)
    assert distributed.shard(5) == expected


def test_batch_smaller_than_world_is_refused(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    frames = mdnext.load(BUNDLED_PATHS, dt=0.00125)[:100]
    with pytest.raises(MDNextError, match="batch size 2 .* 4 processes") as error:
        mdnext.train(frames, "linear", history=0, config=TrainConfig(epochs=1, batch_size=2, quiet=True))
    assert "\n" not in str(error.value)
