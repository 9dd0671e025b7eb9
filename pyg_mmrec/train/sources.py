r"""The recommender's batches, built from the :obj:`loader` section of a
configuration (see :func:`build_source`)."""
import logging
from typing import Optional, Sequence, Union

from torch_geometric.data import HeteroData

from ..graphs import PairIndex, interaction_graph, train_graph
from ..loader import BatchSource
from . import distributed

log = logging.getLogger('pyg_mmrec')

#: The batch samplers of :func:`build_source`.
SAMPLERS = ('full', 'neighbor')


def build_source(
    model,
    data: HeteroData,
    *,
    sampler: str = 'full',
    batch_size: int = 2048,
    num_neighbors: Union[str, Sequence[int]] = '10,10',
    negatives: str = 'uniform',
    num_workers: int = 0,
) -> BatchSource:
    r"""The recommender's batches over the training graph, sharded over the
    processes of :mod:`torch.distributed` (every keyword argument is a
    setting of the configuration's :obj:`loader` section).

    Example:
        >>> source = build_source(model, data, batch_size=1024)
        >>> trainer = Trainer(model, data, source=source)
        >>> len(source) == -(-int(data['user', 'item'].train_mask.sum())
        ...                  // 1024)
        True

    Args:
        model (Recommender): The model (or a
            :class:`~torch.nn.parallel.DistributedDataParallel` around it).
        data (HeteroData): The dataset.
        sampler (str): :obj:`"full"`: the model's
            :meth:`~pyg_mmrec.models.Recommender.batch_source` (full-graph
            triples, :class:`~pyg_mmrec.loader.TripletSource` for most
            models); :obj:`"neighbor"`:
            :class:`~pyg_mmrec.loader.NeighborSource` mini-batches
            (LinkNeighborLoader), for models whose encoder is local
            (:attr:`~pyg_mmrec.models.Recommender.supports_subgraph`).
            (default: :obj:`"full"`)
        batch_size (int): Training triples per batch. (default: :obj:`2048`)
        num_neighbors (str or list): Neighbours per hop of
            :obj:`"neighbor"`, *e.g.* :obj:`"10,10"`. (default:
            :obj:`"10,10"`)
        negatives (str): Negatives of :obj:`"neighbor"` batches:
            :obj:`"uniform"` or :obj:`"popularity"` true negatives, or
            :obj:`"loader"` (LinkNeighborLoader's own, which may be
            positives). (default: :obj:`"uniform"`)
        num_workers (int): Worker processes of :obj:`"neighbor"`.
            (default: :obj:`0`)

    Raises:
        ValueError: If :obj:`sampler` is unknown, or :obj:`"neighbor"` for
            a model that encodes the whole graph.
    """
    net = getattr(model, 'module', model)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got "
                         f"{sampler!r}")
    graph = train_graph(data, 'cpu')
    shard = (distributed.rank(), distributed.world_size())
    exclude = negative_exclusion(net, data)
    if sampler == 'full':
        return net.batch_source(graph, batch_size, shard=shard,
                                exclude=exclude)
    if not getattr(net, 'supports_subgraph', False):
        raise ValueError(
            f"sampler='neighbor': {type(net).__name__} encodes the whole "
            f"training graph (or draws batches of its own) and cannot train "
            f"on sampled subgraphs; use the default full-graph batches "
            f"(mini-batch models: those with supports_subgraph, e.g. "
            f"lightgcn)")
    return net.neighbor_source(graph, batch_size, shard=shard,
                               exclude=exclude, num_neighbors=num_neighbors,
                               negatives=negatives, num_workers=num_workers)


def negative_exclusion(model, data: HeteroData) -> Optional[PairIndex]:
    r"""The pairs the source's negatives avoid besides the training ones:
    every interaction when the model asks for it
    (:attr:`~pyg_mmrec.models.Recommender.negative_exclusion`), else
    :obj:`None`."""
    rule = getattr(model, 'negative_exclusion', 'train')
    if rule == 'train':
        return None
    if rule != 'all':
        raise ValueError(f"negative_exclusion must be 'train' or 'all', "
                         f"got {rule!r}")
    log.warning("%s: negatives exclude validation and test items too (the "
                "original's leak, faithful mode)", type(model).__name__)
    return interaction_graph(data, 'cpu')
