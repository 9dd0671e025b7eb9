r"""Thin seams over :mod:`torch.distributed`: every helper falls back to the
single-process behaviour (rank :obj:`0`, world size :obj:`1`, no-op
collectives) when no process group is initialised, so that library code can
call them unconditionally.

Multi-process training is started by ``torchrun``, which sets
:obj:`WORLD_SIZE`, :obj:`RANK`, :obj:`LOCAL_RANK`, :obj:`MASTER_ADDR` and
:obj:`MASTER_PORT` in every process; :func:`init_from_env` joins that
process group (gloo on CPU, NCCL on GPU) and :func:`wrap_model` wraps the
model in :class:`~torch.nn.parallel.DistributedDataParallel`."""
import os
from typing import Optional

import torch
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


def average_gradients(params) -> None:
    r"""Replaces the gradient of every parameter of :obj:`params` by its
    mean over the processes (one flat all-reduce; a parameter without a
    gradient counts as zero in every process, and gets one only if some
    process has one); a no-op with one process. Used for the parameters a
    model's :class:`~pyg_mmrec.models.Stage` trains outside the
    :class:`~torch.nn.parallel.DistributedDataParallel` wrapper."""
    world = world_size()
    if world == 1:
        return
    params = [p for p in params if p.requires_grad]
    has = torch.tensor([float(p.grad is not None) for p in params])
    all_reduce_sum(has)
    params = [p for p, h in zip(params, has.tolist()) if h > 0]
    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p)
             for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    all_reduce_sum(flat).div_(world)
    for p, g in zip(params, flat.split([g.numel() for g in grads])):
        p.grad = g.view_as(p).clone()


def broadcast_buffers(module: torch.nn.Module) -> None:
    r"""Copies rank :obj:`0`'s persistent buffers (those of the state dict,
    *e.g.* generated graphs' items and seeds) into every process, in place;
    a no-op with one process."""
    if world_size() == 1:
        return
    names = set(module.state_dict().keys())
    for name, buf in module.named_buffers():
        if name in names and buf is not None:
            dist.broadcast(buf, src=0)


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


def check_device(device: str) -> torch.device:
    r"""The :class:`torch.device` :obj:`device` names, when this machine
    has it.

    Raises:
        ValueError: If :obj:`device` is not a device string, or names a
            CUDA device that this PyTorch build or machine does not have.
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"--device: {device!r} is not a device (e.g. "
                         f"'cpu', 'cuda', 'cuda:1'): {e}") from None
    if parsed.type == 'cuda':
        if not torch.cuda.is_available():
            build = ('this PyTorch build has no CUDA support'
                     if torch.version.cuda is None else
                     'no CUDA GPU is visible')
            raise ValueError(f"--device {device}: {build}; use --device cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"--device {device}: there are {count} CUDA "
                             f"device(s) (cuda:0..cuda:{count - 1})")
    elif parsed.type not in ('cpu', 'meta') and not hasattr(
            torch, parsed.type):
        raise ValueError(f"--device {device}: unsupported device type")
    return parsed


def init_from_env(device: str = 'cpu') -> str:
    r"""Joins the process group ``torchrun`` describes in the environment
    when it has more than one process (:obj:`WORLD_SIZE` > 1): backend
    :obj:`"nccl"` for a CUDA :obj:`device`, else :obj:`"gloo"`; rendezvous
    through :obj:`MASTER_ADDR` / :obj:`MASTER_PORT` (``env://``).
    Returns the device of this process: :obj:`"cuda:<LOCAL_RANK>"` for
    :obj:`"cuda"` (one GPU per process), :obj:`device` otherwise. Without
    ``torchrun`` (or with one process) nothing happens.

    Raises:
        ValueError: If :obj:`device` is unusable here (see
            :obj:`check_device`).
    """
    check_device(device)
    world = int(os.environ.get('WORLD_SIZE', '1'))
    cuda = torch.device(device).type == 'cuda'
    if world > 1 and cuda and torch.device(device).index is None:
        local = int(os.environ.get('LOCAL_RANK', '0'))
        torch.cuda.set_device(local)
        device = f'cuda:{local}'
    if world > 1 and not is_initialized():
        dist.init_process_group('nccl' if cuda else 'gloo')
    return device


def wrap_model(model: torch.nn.Module) -> torch.nn.Module:
    r""":obj:`model` in :class:`~torch.nn.parallel.DistributedDataParallel`
    when several processes train (else :obj:`model` itself): the
    parameters are broadcast from rank :obj:`0` once, and the gradients of
    every step are averaged over the processes. Buffers (normalised
    adjacencies, kNN graphs) are built from the same data in every process
    and are never broadcast. The parameters of the model's
    :meth:`~pyg_mmrec.models.Recommender.stages` are left out of the
    wrapper: the trainer averages their gradients itself
    (:func:`average_gradients`), since a stage's loss does not run through
    the wrapper's forward.
    """
    if world_size() == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel
    for param in model.parameters():  # not the (sparse) buffers
        dist.broadcast(param.data, src=0)
    stages = model.stages() if hasattr(model, 'stages') else ()
    claimed = {id(p) for st in stages for p in st.parameters()}
    ignored = [name for name, p in model.named_parameters()
               if id(p) in claimed]
    if ignored:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, ignored)
    if not any(p.requires_grad and id(p) not in claimed
               for p in model.parameters()):
        return model  # nothing of the recommender's own to synchronise
    # static_graph: the parameters a step leaves out of its loss (e.g.
    # feature projections with a zero loss weight) are found once, not by
    # a traversal of the autograd graph at every step.
    return DistributedDataParallel(model, init_sync=False,
                                   forward_sync_buffers=False,
                                   static_graph=True)


def destroy() -> None:
    r"""Leaves the process group, if any."""
    if is_initialized():
        dist.destroy_process_group()


__all__ = ['is_initialized', 'rank', 'world_size', 'is_main_process',
           'all_reduce_sum', 'average_gradients', 'broadcast_buffers',
           'barrier', 'shard', 'init_from_env',
           'wrap_model', 'destroy']
