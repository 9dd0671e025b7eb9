r"""The evaluation protocols by name: full ranking and sampled
leave-one-out, chosen by configuration for any model."""
from typing import Any, Dict, Optional, Sequence, Union

from torch_geometric.data import HeteroData

from pyg_mmrec.train.evaluator import Evaluator, check_test_masks
from pyg_mmrec.train.sampled import SampledEvaluator

#: The evaluation protocols, by name (see :func:`build_evaluator`).
PROTOCOLS = {'full': Evaluator, 'sampled': SampledEvaluator}


def build_evaluator(protocol: str, data: HeteroData, *,
                    ks: Optional[Sequence[int]] = None,
                    batch_size: Optional[int] = None,
                    test_masks: Union[str, Sequence[str]] = ('train_val', ),
                    num_negatives: int = 99, seed: int = 0) -> Any:
    r"""Builds the evaluator of an evaluation protocol of
    :obj:`PROTOCOLS`: :obj:`"full"` (:class:`~pyg_mmrec.train.Evaluator`,
    full ranking;
    ignores :obj:`num_negatives` and :obj:`seed`) or :obj:`"sampled"`
    (:class:`~pyg_mmrec.train.SampledEvaluator`, 1 held-out item against
    :obj:`num_negatives` negatives seeded by :obj:`seed`; it has no test
    masking rules, so :obj:`test_masks` must be the default).

    Args:
        protocol (str): :obj:`"full"` or :obj:`"sampled"`.
        data (HeteroData): The dataset.
        ks (Sequence[int], optional): Cut-offs. (default: the protocol's)
        batch_size (int, optional): Users (full) or cases (sampled) per
            batch. (default: the protocol's)
        test_masks (Sequence[str] or str): Test masking rules of full
            ranking. (default: :obj:`("train_val",)`)
        num_negatives (int): Negatives per case (sampled). (default: :obj:`99`)
        seed (int): Seed of the negatives (sampled). (default: :obj:`0`)
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {tuple(PROTOCOLS)}, got "
                         f"{protocol!r}")
    kwargs: Dict[str, Any] = {}
    if ks is not None:
        kwargs['ks'] = ks
    if batch_size is not None:
        kwargs['batch_size'] = batch_size
    if protocol == 'full':
        return Evaluator(data, test_masks=test_masks, **kwargs)
    masks = check_test_masks(test_masks)
    if masks != ('train_val', ):
        raise ValueError(
            f"test_masks={masks!r} does not apply to the sampled protocol "
            f"(its negatives exclude all of the user's train/val/test items); "
            f"leave test_masks at its default ('train_val',)")
    return PROTOCOLS[protocol](data, num_negatives=num_negatives, seed=seed,
                               **kwargs)
