r"""Divergence: a loss term or a score that is not finite stops the run
with a message naming the term, the epoch and the batch, instead of
training on with :obj:`nan`."""
import math
from typing import Any, Dict, Mapping, Optional

import torch
from torch import Tensor

#: The hint every divergence message ends with.
HINT = ("lower the learning rate (--lr), scale or normalise the item "
        "features, or clip gradients (--clip-grad-norm)")


class TrainingDiverged(RuntimeError):
    r"""A run produced a loss term or a score that is not finite.

    Attributes:
        epoch (int): The epoch.
        where (str): What was not finite (a loss term, with its stage and
            batch, or the scores of an evaluation).
    """
    def __init__(self, epoch: int, where: str, verb: str = 'is') -> None:
        self.epoch, self.where = epoch, where
        super().__init__(f"training diverged at epoch {epoch}: {where} "
                         f"{verb} not finite; {HINT}")


def loss_values(terms: Mapping[str, Any], epoch: int, batch: int,
                stage: Optional[str] = None) -> Dict[str, float]:
    r"""The float value of every loss term of one batch.

    Raises:
        TypeError: If a term is not a tensor (e.g. a Python float that no
            gradient can flow through), naming it.
        TrainingDiverged: If a term is :obj:`nan` or :obj:`inf`, naming the
            term, the stage, the epoch and the batch.
    """
    out = {}
    for key, value in terms.items():
        if not isinstance(value, Tensor):
            raise TypeError(
                f"loss term {key!r}{_of(stage)} is a {type(value).__name__}, "
                f"not a tensor: return every term as a tensor (e.g. "
                f"x.new_zeros(()) for a term that does not apply)")
        out[key] = float(value.detach())
        if not math.isfinite(out[key]):
            raise TrainingDiverged(epoch, f"loss term {key!r}{_of(stage)} "
                                   f"({out[key]}) of batch {batch}")
    return out


def _of(stage: Optional[str]) -> str:
    return f" of stage {stage!r}" if stage else ''


def checked_scores(score, epoch: int, split: str):
    r"""Wraps a model's :obj:`score` so that scores that are not finite
    raise :class:`TrainingDiverged` instead of ranking items by
    :obj:`nan`."""
    def wrapped(*args, **kwargs) -> Tensor:
        out = score(*args, **kwargs)
        if not bool(torch.isfinite(out).all()):
            raise TrainingDiverged(epoch, f"the model's {split} scores",
                                   verb='are')
        return out
    return wrapped


def finite_or_none(obj: Any) -> Any:
    r"""A copy of :obj:`obj` (nested dicts, lists, tuples) with every
    float that is not finite replaced by :obj:`None`, so that it is strict
    JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj
