r"""Thin seams over :mod:`torch.distributed`: every helper falls back to the
single-process behaviour (rank :obj:`0`, world size :obj:`1`, no-op
collectives) when no process group is initialised, so that library code can
call them unconditionally."""
from typing import Optional

import torch.distributed as dist
from torch import Tensor


def is_initialized() -> bool:
    r"""Whether a :mod:`torch.distributed` process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    r"""The rank of this process (:obj:`0` without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    r"""The number of processes (:obj:`1` without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    r"""Whether this process is rank :obj:`0` (the one that writes files)."""
    return rank() == 0


def all_reduce_sum(tensor: Tensor) -> Tensor:
    r"""Sums :obj:`tensor` over all processes, in place, and returns it; a
    no-op returning :obj:`tensor` without a process group or with one
    process. The backend must support the tensor's device (*e.g.*,
    :obj:`"gloo"` for CPU, :obj:`"nccl"` for CUDA tensors)."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    r"""Waits for all processes; a no-op without a process group or with one
    process."""
    if world_size() > 1:
        dist.barrier()


def shard(n: int, rank_: Optional[int] = None,
          world_size_: Optional[int] = None) -> slice:
    r"""The contiguous shard of :obj:`range(n)` of one process:
    :math:`[\lfloor n r / W \rfloor, \lfloor n (r + 1) / W \rfloor)` for rank
    :math:`r` among :math:`W` processes (sizes differ by at most one; the
    shards partition :obj:`range(n)` in order).

    Args:
        n (int): The number of items to split.
        rank_ (int, optional): The rank. (default: :func:`rank`)
        world_size_ (int, optional): The number of processes.
            (default: :func:`world_size`)
    """
    r = rank() if rank_ is None else int(rank_)
    w = world_size() if world_size_ is None else int(world_size_)
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    if w < 1 or not 0 <= r < w:
        raise ValueError(f"rank must be in [0, world_size), got rank={r}, "
                         f"world_size={w}")
    return slice(n * r // w, n * (r + 1) // w)


__all__ = ['is_initialized', 'rank', 'world_size', 'is_main_process',
           'all_reduce_sum', 'barrier', 'shard']
