r"""The evaluation protocols by name: full ranking and sampled
leave-one-out, chosen by configuration for any model (see
:func:`build_evaluator`)."""
from typing import Any, Dict, Optional, Sequence, Union

from torch_geometric.data import HeteroData

from .evaluator import EvaluationProtocol, Evaluator, check_test_masks
from .sampled import SampledEvaluator

#: The evaluation protocols, by name (see :func:`build_evaluator`); each
#: carries its default selection metric (:obj:`default_metric`).
PROTOCOLS = {'full': Evaluator, 'sampled': SampledEvaluator}


def build_evaluator(
    data: HeteroData,
    seed: int = 0,
    *,
    protocol: str = 'full',
    ks: Optional[Sequence[int]] = None,
    eval_batch_size: Optional[int] = None,
    test_masks: Union[str, Sequence[str]] = ('train_val', ),
    num_negatives: int = 99,
    select_on: str = 'val',
    metric: Optional[str] = None,
) -> EvaluationProtocol:
    r"""Builds the evaluator of an evaluation protocol of
    :obj:`PROTOCOLS`, with its model selection (every keyword argument is a
    setting of the configuration's :obj:`evaluation` section):
    :obj:`"full"` (:class:`~pyg_mmrec.train.Evaluator`, full ranking;
    ignores :obj:`num_negatives` and :obj:`seed`) or :obj:`"sampled"`
    (:class:`~pyg_mmrec.train.SampledEvaluator`, 1 held-out item against
    :obj:`num_negatives` negatives seeded by :obj:`seed`; it has no test
    masking rules, so :obj:`test_masks` must be the default).

    Example:
        >>> evaluator = build_evaluator(data, protocol='sampled',
        ...                             num_negatives=99)
        >>> evaluator.metric
        'hit@10'

    Args:
        data (HeteroData): The dataset.
        seed (int): Seed of the negatives (sampled). (default: :obj:`0`)
        protocol (str): :obj:`"full"` or :obj:`"sampled"`.
            (default: :obj:`"full"`)
        ks (Sequence[int], optional): Cut-offs of the reported metrics.
            (default: the protocol's)
        eval_batch_size (int, optional): Users (full) or cases (sampled)
            per evaluation batch. (default: the protocol's)
        test_masks (Sequence[str] or str): Test masking rules of full
            ranking (see :class:`~pyg_mmrec.train.Evaluator`): the first
            gives the reported test metrics; with several, every test
            evaluation also records each rule's. :obj:`"train"` is MMRec's
            and DiffMM's rule (validation items may be recommended at
            test). (default: :obj:`("train_val",)`)
        num_negatives (int): Negatives per case (sampled).
            (default: :obj:`99`)
        select_on (str): The split the best epoch is selected on:
            :obj:`"val"` (the honest protocol) or :obj:`"test"` (only to
            reproduce papers that select on test; labelled as such in every
            output). (default: :obj:`"val"`)
        metric (str, optional): The selection metric. (default: the
            protocol's, :obj:`"recall@20"` for full ranking and
            :obj:`"hit@10"` for the sampled protocol)
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {tuple(PROTOCOLS)}, got "
                         f"{protocol!r}")
    kwargs: Dict[str, Any] = {}
    if ks is not None:
        kwargs['ks'] = ks
    if eval_batch_size is not None:
        kwargs['batch_size'] = eval_batch_size
    if protocol == 'full':
        evaluator = Evaluator(data, test_masks=test_masks, **kwargs)
    else:
        masks = check_test_masks(test_masks)
        if masks != ('train_val', ):
            raise ValueError(
                f"test_masks={masks!r} does not apply to the sampled "
                f"protocol (its negatives exclude all of the user's "
                f"train/val/test items); leave test_masks at its default "
                f"('train_val',)")
        evaluator = PROTOCOLS[protocol](data, num_negatives=num_negatives,
                                        seed=seed, **kwargs)
    return evaluator.select(select_on, metric)
