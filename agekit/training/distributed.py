"""Training on several processes (GPUs) with DistributedDataParallel.

``torchrun --nproc_per_node N -m agekit train ...`` starts N copies of the
trainer; each reads its rank from the environment and joins one process group
(NCCL between GPUs, gloo on the CPU). The rules that keep the result equal to a
one-process run:

* one global order per epoch: every rank draws the same permutation from the
  same seeded generator; each global batch of ``batch_size`` faces is cut into
  N contiguous pieces and rank r trains on piece r, so the pieces of one step
  concatenate to exactly the batch one process would see;
* DistributedDataParallel averages the gradients of the N pieces, which equals
  the gradient of the whole batch for losses that are means over samples
  (RAPL's). Batch-norm statistics, and the Siamese loss's pairs, stay per piece;
* RAPL's reference bank gathers every rank's features before choosing
  (:func:`gather_cat`), so all ranks hold the same references;
* evaluation first copies rank 0's batch-norm statistics to all ranks, then
  splits each data set into N contiguous shards and gathers the predictions, so
  metrics are computed over the whole split with one model;
* only rank 0 writes files.

Taught in ``notebooks/06_rapl_training.ipynb`` (the researcher's section).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from agekit.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the group: rank in 0..world_size-1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistInfo:
    """Read RANK, WORLD_SIZE and LOCAL_RANK as set by ``torchrun`` (one process when unset)."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers; start with torchrun.") from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} does not fit WORLD_SIZE={world_size}; start with torchrun.")
    return DistInfo(rank, world_size, local_rank)


def setup(device="auto", timeout_s: float = 1800.0) -> tuple[DistInfo, torch.device]:
    """Join the process group when started by torchrun; return (info, this rank's device).

    One process: no group, ``resolve_device(device)``. Several: CUDA ranks take
    GPU ``LOCAL_RANK`` and talk over NCCL; CPU ranks use gloo.
    """
    info = from_environment()
    chosen = resolve_device(device)
    if not info.enabled:
        return info, chosen
    if chosen.type == "cuda":
        chosen = torch.device("cuda", info.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(chosen)
    elif chosen.type == "mps":
        raise ValueError("Distributed training on Apple MPS is not supported; use device='cpu' or one process.")
    if not dist.is_initialized():
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return info, chosen


def shutdown() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(index: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Rank r's contiguous piece of a global batch or data set: index [B] -> [about B / N].

    The pieces of ranks 0..N-1 concatenate back to ``index``; sizes differ by at most one.
    """
    if not info.enabled:
        return index
    n = index.shape[0]
    start, stop = n * info.rank // info.world_size, n * (info.rank + 1) // info.world_size
    return index[start:stop]


def gather_cat(tensor: torch.Tensor, info: DistInfo | None = None) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated along dim 0 in rank order (lengths may differ).

    tensor: [k_r, ...] on this rank -> [sum_r k_r, ...] on every rank. One process:
    returned as is. This is the ``gather`` that RAPL's ``ReferenceBank.end_epoch`` takes.
    """
    if (info is not None and not info.enabled) or not (dist.is_available() and dist.is_initialized()):
        return tensor
    world_size = dist.get_world_size()
    original_dtype = tensor.dtype
    if tensor.dtype == torch.bool:
        tensor = tensor.to(torch.uint8)
    tensor = tensor.contiguous()
    length = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.int64)
    lengths = [torch.zeros_like(length) for _ in range(world_size)]
    dist.all_gather(lengths, length)
    lengths = [int(n) for n in lengths]
    longest = max(lengths)
    if tensor.shape[0] < longest:
        padding = tensor.new_zeros((longest - tensor.shape[0], *tensor.shape[1:]))
        tensor = torch.cat([tensor, padding])
    pieces = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(pieces, tensor)
    return torch.cat([piece[:n] for piece, n in zip(pieces, lengths)]).to(original_dtype)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over ranks (in place when distributed; returned as is otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(module: torch.nn.Module, info: DistInfo) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank.

    DistributedDataParallel syncs them at the start of each training forward pass,
    but the last pass leaves each rank with its own; evaluation needs one model.
    """
    if info.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def gather_objects(value, info: DistInfo) -> list:
    """Every rank's picklable ``value`` as a list in rank order (one process: ``[value]``)."""
    if not info.enabled:
        return [value]
    values = [None] * info.world_size
    dist.all_gather_object(values, value)
    return values


def barrier(info: DistInfo) -> None:
    """Wait for all ranks (no-op for one process)."""
    if info.enabled:
        dist.barrier()
