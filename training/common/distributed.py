"""Data-parallel training under torchrun: one process per device, DistributedDataParallel.

`torchrun --nproc_per_node N -m training train ...` starts N processes and sets RANK,
WORLD_SIZE and LOCAL_RANK (and the rendezvous address) in each one's environment. Without
those variables (plain `python -m training train`) everything here is a no-op and a trainer
runs exactly as it always has; under torchrun, even with N = 1, there is a process group.

The conventions every trainer follows (the acoustic trainer does, the airfoil trainer can):

- every rank draws the same global batch from the same seeded generator and keeps its share
  (`Distributed.shard`), so the global batch, and with it the trajectory, does not depend on
  the number of processes;
- the loss a rank back-propagates is its share of the global mean (`Distributed.loss_scale`);
  DistributedDataParallel averages gradients over ranks, which makes them the gradients of
  the global mean;
- only rank 0 (`Distributed.is_main`) validates and writes checkpoints, history, plots and
  exports; the other ranks wait at a barrier.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from training.common.launch import Launch, is_main_process

__all__ = ["Distributed", "Launch", "distributed", "is_main_process", "resolve_device"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    """The process group of one training run (world size 1: no group, every call a no-op)."""

    launch: Launch
    device: torch.device
    backend: str | None  # "nccl", "gloo"; None when single-process

    @property
    def rank(self) -> int:
        return self.launch.rank

    @property
    def world_size(self) -> int:
        return self.launch.world_size

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.launch.is_main

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of n items (shares differ by at most one)."""
        r, w = self.rank, self.world_size
        return slice(r * n // w, (r + 1) * n // w)

    def loss_scale(self, n_global: int) -> float:
        """Factor that turns a rank's *sum* of per-item losses into its share of the global
        mean, times the world size because DDP divides the summed gradients by it."""
        return self.world_size / n_global

    def barrier(self) -> None:
        if not self.enabled:
            return
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.index or 0])
        else:
            dist.barrier()

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum of a tensor over ranks (a copy; the input is untouched)."""
        out = value.detach().clone()
        if self.enabled:
            dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (e.g. a deadline one rank saw first)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to run the training forward through: DDP when distributed (it
        broadcasts rank 0's parameters once, when built, and averages gradients after each
        backward)."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)


def resolve_device(name: str, launch: Launch) -> torch.device:
    """`auto` | `cpu` | `cuda` -> the device of this rank (cuda:LOCAL_RANK under torchrun)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda was asked for, but torch sees no CUDA device")
        if launch.launched:
            if launch.local_rank >= torch.cuda.device_count():
                raise SystemExit(
                    f"LOCAL_RANK {launch.local_rank} but torch sees "
                    f"{torch.cuda.device_count()} CUDA devices: --nproc_per_node is too large"
                )
            dev = torch.device("cuda", launch.local_rank)
            torch.cuda.set_device(dev)
    return dev


def single_process(device: str = "auto") -> Distributed:
    """This process alone, whatever torchrun says: no group, rank 0 of 1."""
    launch = Launch()
    return Distributed(launch, resolve_device(device, launch), None)


@contextmanager
def distributed(device: str = "auto") -> Iterator[Distributed]:
    """The run's process group: NCCL on CUDA, gloo on CPU; torn down on the way out.

    Without torchrun's variables no group is made. A group that already exists (a caller set
    it up) is used as it is and left alone.
    """
    launch = Launch.from_env()
    dev = resolve_device(device, launch)
    if not launch.launched:
        yield Distributed(launch, dev, None)
        return
    if not dist.is_available():
        raise SystemExit("this torch build has no torch.distributed")
    owned = not dist.is_initialized()
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if owned:
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)  # type: ignore[arg-type]
    else:
        backend = str(dist.get_backend())
    log.info("rank %d of %d on %s (%s)", launch.rank, launch.world_size, dev, backend)
    ctx = Distributed(launch, dev, backend)
    try:
        yield ctx
        ctx.barrier()  # nobody leaves while rank 0 still writes
    finally:
        if owned:
            dist.destroy_process_group()
