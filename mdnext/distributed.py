"""Data-parallel training under ``torchrun``: the process group and the few collectives mdnext uses.

``torchrun --nproc_per_node P …`` starts P copies of a program with ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment. :func:`setup` then joins
them into one process group (gloo on the CPU; gloo for CPU tensors and NCCL for CUDA tensors when
training on GPUs, each process on ``cuda:LOCAL_RANK``). Without torchrun (or with one process)
every function here is a no-op for a single process: rank 0 of a world of 1.

Rank 0 is the *main* process: it alone writes files and prints. :func:`run_on_main` runs a step
there (alone, as a world of 1) while the others wait for its result.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

from mdnext.errors import MDNextError, first_line

T = TypeVar("T")

#: Longest wait in a collective: the other ranks wait this long for rank 0's final evaluation.
TIMEOUT = datetime.timedelta(hours=6)
_ENVIRONMENT = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

_alone = False  # set on rank 0 inside run_on_main: it then acts as a world of 1


class DistributedError(MDNextError, RuntimeError):
    """A torchrun launch that cannot form its process group, or a failure on another rank."""


def launched() -> bool:
    """Whether this process was started by torchrun (or alike) as one of several (``WORLD_SIZE`` > 1).

    Raises:
        DistributedError: ``WORLD_SIZE`` > 1 without the rest of torchrun's environment.
    """
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise DistributedError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None
    if size <= 1:
        return False
    missing = [name for name in _ENVIRONMENT if name not in os.environ]
    if missing:
        raise DistributedError(f"WORLD_SIZE={size} but {', '.join(missing)} not set: launch with torchrun")
    return True


def active() -> bool:
    """Whether collectives are live: a process group of more than one process, outside :func:`run_on_main`."""
    return not _alone and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """Number of processes training together (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this is rank 0, the process that writes files and prints."""
    return rank() == 0


def resolve_device(name: str) -> torch.device:
    """The device this process trains on: ``"auto"`` → cuda where available, else cpu.

    Under torchrun a cuda device is ``cuda:LOCAL_RANK`` (one GPU per process).

    Raises:
        MDNextError: cuda asked for but unavailable, or fewer GPUs than processes on this node.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if not name.startswith("cuda"):
        return torch.device(name)
    if not torch.cuda.is_available():
        raise MDNextError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if not launched():
        return torch.device(name)
    index = int(os.environ["LOCAL_RANK"])
    if index >= torch.cuda.device_count():
        raise DistributedError(f"process LOCAL_RANK={index} has no GPU: this node has {torch.cuda.device_count()}")
    return torch.device("cuda", index)


def setup(device: str = "cpu") -> torch.device:
    """Join the torchrun process group (once; later calls only resolve the device).

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``: gloo on the CPU, NCCL (with gloo for CPU
            tensors) on GPUs.

    Returns:
        The device for this process (``cuda:LOCAL_RANK`` on GPUs under torchrun).

    Raises:
        DistributedError: The environment is incomplete or the group cannot be formed.
    """
    resolved = resolve_device(device)
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return resolved
    if not dist.is_available():
        raise DistributedError("this PyTorch build has no torch.distributed: run without torchrun")
    backend = "gloo"
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
        backend = "cpu:gloo,cuda:nccl"
    try:
        dist.init_process_group(backend, init_method="env://", timeout=TIMEOUT)
    except Exception as exc:  # a failed rendezvous: one line, not the c10d traceback
        raise DistributedError(f"cannot join the torchrun process group ({backend}): {first_line(exc)}") from exc
    atexit.register(teardown)
    return resolved


def teardown() -> None:
    """Leave the process group (if any); safe to call more than once."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process gets here."""
    if active():
        dist.barrier()


def broadcast(value: T) -> T:
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sums of ``values`` over all ranks, in float64 (every rank gets the same numbers)."""
    if not active():
        return [float(v) for v in values]
    tensor = torch.tensor([float(v) for v in values], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Within this block this process acts as a single process (world of 1, no collectives)."""
    global _alone
    before, _alone = _alone, True
    try:
        yield
    finally:
        _alone = before


def run_on_main(step: Callable[[], T]) -> T:
    """Run ``step`` on rank 0 only (as a single process) and return its result on every rank.

    The other ranks wait for it. An exception in ``step`` is re-raised on rank 0 and raised as
    :class:`DistributedError` (with its first line) on the others, so that no rank hangs.
    """
    if not active():
        return step()
    if is_main():
        try:
            with alone():
                result = step()
        except BaseException as exc:
            broadcast(("error", f"rank 0: {first_line(exc)}"))
            raise
        return broadcast(("ok", result))[1]
    status, payload = broadcast(None)
    if status == "error":
        raise DistributedError(payload)
    return payload


def shard(n_items: int) -> range:
    """This rank's contiguous share of ``n_items`` items (near-equal shares, in rank order)."""
    size, index = world_size(), rank()
    base, extra = divmod(int(n_items), size)
    start = index * base + min(index, extra)
    return range(start, start + base + (1 if index < extra else 0))
