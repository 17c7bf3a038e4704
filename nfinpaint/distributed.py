"""Multi-process training under ``torchrun``: process group, devices, and rank-0-only work.

``torchrun --nproc_per_node=G -m nfinpaint.train ...`` sets RANK, WORLD_SIZE and
LOCAL_RANK; :func:`setup` then joins the process group (NCCL on GPUs, gloo on
the CPU) and gives each process its GPU.  Without those variables everything
runs in one process and the helpers here are no-ops.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from nfinpaint.cli import UsageError
from nfinpaint.errors import NfinpaintError
from nfinpaint.devices import resolve_device  # noqa: F401  (also this module's: benchmarks use it)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, samples and writes checkpoints."""
        return self.rank == 0


def setup(device_name: str = "auto") -> DistInfo:
    """Join the torchrun process group if there is one; return this process's rank and device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1 and device_name.strip().lower().startswith("cuda:"):
        # every process would take that one GPU, and NCCL then fails in its own words
        raise UsageError(f"--device {device_name}: under torchrun each process takes the GPU of its LOCAL_RANK; "
                         f"use --device cuda (or auto), and CUDA_VISIBLE_DEVICES to choose the GPUs")
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, device)


class PeerStopped(NfinpaintError):
    """Another process of this run stopped first, and this one's collective failed with it."""


# What gloo raises in a process whose peer is gone; NCCL's aborts and the store's timeouts are
# torch.distributed.DistError.
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer")


def peer_stopped(exc: BaseException, info: DistInfo) -> PeerStopped | None:
    """A :class:`PeerStopped` that says what ``exc`` means, when it is this process's side of another
    process of the run stopping (its own error, printed by that process, says why); None otherwise.
    The peer's error is the one to read: this one's is gloo's or NCCL's traceback of a lost connection."""
    if not info.enabled or not (isinstance(exc, dist.DistError) or any(text in str(exc) for text in _PEER_GONE)):
        return None
    lines = str(exc).strip().splitlines()
    # gloo's first line: "[.../pair.cc:561] Connection closed by peer [ADDRESS]:PORT. This is typically ..."
    detail = re.sub(r"^\[[^\]]*\]\s*", "", lines[0]).split(". ")[0] if lines else type(exc).__name__
    return PeerStopped(f"process {info.rank} of {info.world_size} stopped because another process of this run "
                       f"stopped first: that process's own error says why (here: {detail[:160]})")


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, info: DistInfo) -> nn.Module:
    """DistributedDataParallel around ``model`` when there are several processes."""
    if not info.enabled:
        return model
    device_ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is true on any (so all ranks stop at the same step)."""
    if not info.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


@torch.compiler.disable     # called inside the compiled step: an eager collective, not a traced one
def mean_over_ranks(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of (detached) ``value`` over every process: with the step's batch split into equal
    shares, the whole batch's mean of a per-share mean.  ``value`` itself in one process.  Every
    process calls it at the same point of the step."""
    if not info.enabled:
        return value.detach()
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
