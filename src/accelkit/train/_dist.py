"""Process-group setup from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from accelkit.errors import DeviceUnavailableError


@dataclass
class DistContext:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str | None  # None when not distributed
    owns_group: bool  # we created the process group, so we destroy it

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device_type(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError("device='cuda' but no CUDA GPU is visible; use device='cpu' or 'auto'")
    return device


def init_distributed(device: str) -> DistContext:
    """Join torchrun's process group when WORLD_SIZE > 1: gloo on CPU, NCCL on CUDA."""
    device_type = resolve_device_type(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch_device = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        torch.cuda.set_device(torch_device)
    else:
        torch_device = torch.device("cpu")
    if world_size <= 1:
        return DistContext(0, 0, 1, torch_device, None, False)
    import torch.distributed as dist

    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl" and not dist.is_nccl_available():
        raise DeviceUnavailableError("NCCL is not available in this torch build; run on CPU (gloo) with device='cpu'")
    owns = False
    if not dist.is_initialized():
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if restart is not None:
            # torchrun's agent store outlives a restart, and the keys the dead attempt's workers
            # wrote (their gloo addresses) would be read by the new ones (measured here: "connection
            # refused" to the dead worker's port, or a hang): give each attempt its own key space
            store, store_rank, store_world = next(dist.rendezvous("env://"))
            store = dist.PrefixStore(f"accelkit/attempt-{restart}", store)
            dist.init_process_group(backend=backend, store=store, rank=store_rank, world_size=store_world)
        else:
            dist.init_process_group(backend=backend)
        owns = True
    return DistContext(dist.get_rank(), local_rank, dist.get_world_size(), torch_device, backend, owns)
