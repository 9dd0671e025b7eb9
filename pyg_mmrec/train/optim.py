r"""Optimisers by name, gradient-norm clipping and the learning-rate decay
of the trainer (MMRec's :obj:`clip_grad_norm` and
:obj:`learning_rate_scheduler`)."""
from typing import Dict, Iterable, Optional, Sequence

import torch
from torch import Tensor

#: The optimisers a stage or the trainer may use, by name.
OPTIMIZERS: Dict[str, type] = {
    'adam': torch.optim.Adam,
    'adamw': torch.optim.AdamW,
}


def build_optimizer(name: str, params: Iterable[Tensor],
                    **kwargs) -> torch.optim.Optimizer:
    r"""The optimiser :obj:`OPTIMIZERS[name]` over :obj:`params`, with
    PyTorch's fused kernel when every parameter is a floating-point tensor
    on the CPU or a CUDA device and :obj:`kwargs` pick no implementation
    (:obj:`fused` or :obj:`foreach`); otherwise PyTorch's default.

    The fused kernel updates each tensor in one pass. The default on CPU
    loops over the tensors and allocates two temporaries of each one's size
    for the denominator :math:`\sqrt{\hat{v}} / c + \epsilon`: 1.2 GiB for
    REARM's Clothing-size 4096-d user table, and a third of its batch time
    (``experiments/results/scale.md``). Same update rule and deterministic;
    the results differ from the default implementation's in the last bits.

    Args:
        name (str): A key of :obj:`OPTIMIZERS`.
        params (Iterable[Tensor]): The parameters.
        **kwargs: The optimiser's arguments (*e.g.*, :obj:`lr`).

    Raises:
        ValueError: If :obj:`name` is not a key of :obj:`OPTIMIZERS`.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, "
                         f"got {name!r}")
    params = list(params)
    if 'fused' not in kwargs and 'foreach' not in kwargs:
        kwargs['fused'] = bool(params) and all(
            p.is_floating_point() and p.device.type in ('cpu', 'cuda')
            for p in params) or None
    return OPTIMIZERS[name](params, **kwargs)


def clip_gradients(optimizer: torch.optim.Optimizer,
                   max_norm: Optional[float]) -> None:
    r"""Scales the gradients of :obj:`optimizer`'s parameters so that their
    total 2-norm is at most :obj:`max_norm`
    (:func:`torch.nn.utils.clip_grad_norm_`); nothing for :obj:`None`."""
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(
            [p for group in optimizer.param_groups for p in group['params']],
            max_norm)


def check_lr_decay(lr_decay: Optional[Sequence[float]]) -> None:
    r"""Refuses a :obj:`lr_decay` that is not :obj:`(gamma, every)` with
    :math:`0 < \gamma \le 1` and :math:`every > 0`."""
    if lr_decay is None:
        return
    if (len(lr_decay) != 2 or not 0 < lr_decay[0] <= 1
            or not lr_decay[1] > 0):
        raise ValueError(f"lr_decay must be [gamma, every] with 0 < gamma "
                         f"<= 1 and every > 0, got {list(lr_decay)}")


def decay_learning_rate(optimizer: torch.optim.Optimizer, lr: float,
                        epoch: int,
                        lr_decay: Optional[Sequence[float]]) -> None:
    r"""Sets the learning rate of epoch :obj:`epoch` (from 1):

    .. math::
        \eta_e = \eta \, \gamma^{(e - 1) / s}

    for :obj:`lr_decay` :math:`= (\gamma, s)`, MMRec's
    :obj:`learning_rate_scheduler` (a
    :class:`~torch.optim.lr_scheduler.LambdaLR` stepped once per epoch;
    LATTICE, MGCN and SMORE use
    :obj:`[0.96, 50]`). A function of the epoch alone, so a resumed run
    follows the same schedule. Nothing for :obj:`None`."""
    if lr_decay is None:
        return
    gamma, every = lr_decay
    for group in optimizer.param_groups:
        group['lr'] = lr * gamma**((epoch - 1) / every)
