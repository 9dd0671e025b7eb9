r"""Mini-batch training on sampled subgraphs: PyG's
:class:`~torch_geometric.loader.LinkNeighborLoader` over the training graph
in triplet mode, with our true-negative samplers in its batches."""
import math
import warnings
from typing import (
    Callable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.loader import LinkNeighborLoader
from torch_geometric.sampler import NeighborSampler

from ..graphs.pairs import PairIndex
from ..graphs.sparse import expand_runs
from ..nn.popularity_negatives import PopularityNegativeSampler
from .batch import BPRBatch, Subgraph
from .sources import init_sharded, shard_slices

#: The edge types of the loader's graph: training pairs and their reverse.
EDGE_TYPE = ('user', 'interacts', 'item')
REV_EDGE_TYPE = ('item', 'rev_interacts', 'user')

#: Maps the batch's (user, positive) global ids :obj:`[B]` to negative
#: items :obj:`[B]`, drawing from the global random number generator (which
#: the loader seeds per epoch and worker).
NegativeFn = Callable[[Tensor, Tensor], Tensor]


class UniformNegatives:
    r"""Uniform true negatives
    (:meth:`~pyg_mmrec.graphs.PairIndex.uniform_negatives`): never a pair
    of :obj:`graph`."""
    def __init__(self, graph: PairIndex):
        self.graph = graph

    def __call__(self, user: Tensor, pos: Tensor) -> Tensor:
        return self.graph.uniform_negatives(user)


class PopularityNegatives:
    r"""Popularity-weighted true negatives
    (:class:`~pyg_mmrec.nn.PopularityNegativeSampler` over :obj:`graph`,
    keyword arguments passed on)."""
    def __init__(self, graph: PairIndex, **kwargs):
        self.sampler = PopularityNegativeSampler(graph, **kwargs)

    def __call__(self, user: Tensor, pos: Tensor) -> Tensor:
        return self.sampler.sample(user)


#: The negatives of :class:`NeighborSource` by name (a model's own, such as
#: FMCNS's causal ones, are drawn in its forward among the subgraph's items).
NEGATIVES = {'uniform': UniformNegatives, 'popularity': PopularityNegatives,
             'loader': None}


def positive_index(batch: HeteroData, edge_types=(EDGE_TYPE, REV_EDGE_TYPE)
                   ) -> Tuple[Tensor, Tensor]:
    r"""The local (user, positive item) rows of a
    :class:`~torch_geometric.loader.LinkNeighborLoader` batch: its
    :obj:`src_index` and :obj:`dst_pos_index` in triplet mode, its
    :obj:`edge_label_index` without negative sampling."""
    src, dst = edge_types[0][0], edge_types[0][-1]
    if 'src_index' in batch[src]:
        return batch[src].src_index, batch[dst].dst_pos_index
    return tuple(batch[edge_types[0]].edge_label_index)


class ReplaceNegatives:
    r"""A :class:`~torch_geometric.loader.LinkNeighborLoader` transform for
    batches of positives over a user-item graph: sets the negatives
    :obj:`dst_neg_index` to those of :obj:`negatives` (in triplet mode,
    instead of the loader's, uniform over all items and never checked
    against existing edges; without negative sampling, where the loader
    samples no neighbourhood for negatives it would discard), and adds the
    items that are not yet in the subgraph
    to :obj:`n_id`, with their edges of :obj:`graph` to the subgraph's users
    (both edge types, with their :obj:`e_id`). The added items have no
    sampled neighbourhood of their own: they see the sampled users only.

    Args:
        graph (PairIndex): The loader's (user, item) edges: position
            :math:`e` of :obj:`graph.edge_index` is edge :math:`e` of both
            edge types.
        negatives (callable): See :obj:`NegativeFn` (:obj:`None` for
            :meth:`join_items` alone).
        edge_types (tuple): The forward and reverse edge types.
            (default: :obj:`(EDGE_TYPE, REV_EDGE_TYPE)`)
    """
    def __init__(self, graph: PairIndex, negatives: NegativeFn,
                 edge_types=(EDGE_TYPE, REV_EDGE_TYPE)):
        self.graph, self.negatives = graph, negatives
        self.edge_types = edge_types
        self.item_ptr, self.item_order = graph.item_csr()

    def __call__(self, batch: HeteroData) -> HeteroData:
        fwd, rev = self.edge_types
        src, dst = fwd[0], fwd[-1]
        user_id, item_id = batch[src].n_id, batch[dst].n_id
        src_index, pos_index = positive_index(batch, self.edge_types)
        user, pos = user_id[src_index], item_id[pos_index]
        neg = self.negatives(user, pos)
        if neg.shape != user.shape:
            raise ValueError(f"negatives must return one item per row "
                             f"{tuple(user.shape)}, got {tuple(neg.shape)}")
        batch[dst].dst_neg_index = self.join_items(batch, neg)
        return batch

    def join_items(self, batch: HeteroData, items: Tensor) -> Tensor:
        r"""The local positions of the global item ids :obj:`items` in
        :obj:`batch`, after adding those not yet in its subgraph with their
        edges of :obj:`graph` to the subgraph's users (as the negatives
        join; also MCLN's intervention items)."""
        item_id = batch[self.edge_types[0][-1]].n_id
        order = torch.argsort(item_id)
        at = torch.searchsorted(item_id[order], items).clamp_(
            max=item_id.numel() - 1)
        found = item_id[order[at]] == items
        new, inverse = torch.unique(items[~found], return_inverse=True)
        local = order[at]
        local[~found] = item_id.numel() + inverse
        if new.numel() > 0:
            self._add_items(batch, new)
        return local

    def _add_items(self, batch: HeteroData, new: Tensor) -> None:
        fwd, rev = self.edge_types
        src, dst = fwd[0], fwd[-1]
        user_id = batch[src].n_id
        start = self.item_ptr[new]
        run, at = expand_runs(start, self.item_ptr[new + 1] - start)
        e_id = self.item_order[at]
        users = self.graph.edge_index[0, e_id]
        order = torch.argsort(user_id)
        pos = torch.searchsorted(user_id[order], users).clamp_(
            max=user_id.numel() - 1)
        keep = user_id[order[pos]] == users
        row = order[pos[keep]]
        col = batch[dst].n_id.numel() + run[keep]
        e_id = e_id[keep]
        batch[dst].n_id = torch.cat([batch[dst].n_id, new])
        batch[dst].num_nodes = batch[dst].n_id.numel()
        for edge_type, index in ((fwd, torch.stack([row, col])),
                                 (rev, torch.stack([col, row]))):
            store = batch[edge_type]
            store.edge_index = torch.cat([store.edge_index, index], dim=1)
            if 'e_id' in store:
                store.e_id = torch.cat([store.e_id, e_id])


def to_bpr_batch(batch: HeteroData,
                 edge_types=(EDGE_TYPE, REV_EDGE_TYPE)) -> BPRBatch:
    r"""The :class:`~pyg_mmrec.loader.BPRBatch` of a triplet batch of
    :class:`~torch_geometric.loader.LinkNeighborLoader`: global (user,
    positive, negative) ids on a :class:`~pyg_mmrec.loader.Subgraph` whose
    edges are the sampled edges of both directions, each pair once."""
    fwd, rev = edge_types
    src, dst = fwd[0], fwd[-1]
    user_id, item_id = batch[src].n_id, batch[dst].n_id
    pairs = torch.cat([batch[fwd].edge_index,
                       batch[rev].edge_index.flip(0)], dim=1)
    keys = torch.unique(pairs[0] * item_id.numel() + pairs[1])
    edge_index = torch.stack([keys // item_id.numel(),
                              keys % item_id.numel()])
    src_index, pos_index = positive_index(batch, edge_types)
    neg = getattr(batch[dst], 'dst_neg_index', None)  # none: pairs
    return BPRBatch(user_id[src_index], item_id[pos_index],
                    None if neg is None else item_id[neg],
                    Subgraph(user_id, item_id, edge_index))


class _Transform:
    # The loader's transform (a class, so that workers can pickle it).
    def __init__(self, replace: Optional[ReplaceNegatives]):
        self.replace = replace

    def __call__(self, batch: HeteroData) -> BPRBatch:
        if self.replace is not None:
            batch = self.replace(batch)
        return to_bpr_batch(batch)


def parse_num_neighbors(num_neighbors: Union[str, int, Sequence[int]]
                        ) -> List[int]:
    r"""Neighbours per hop from :obj:`"10,10"`, :obj:`10` or
    :obj:`[10, 10]` (:obj:`-1`: all)."""
    if isinstance(num_neighbors, str):
        parts = [p.strip() for p in num_neighbors.split(',') if p.strip()]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"num_neighbors must be comma-separated "
                             f"integers such as '10,10', got "
                             f"{num_neighbors!r}") from None
    elif isinstance(num_neighbors, int):
        values = [num_neighbors]
    else:
        values = [int(v) for v in num_neighbors]
    if not values or any(v == 0 or v < -1 for v in values):
        raise ValueError(f"num_neighbors must be one positive count (or -1, "
                         f"all) per hop, got {num_neighbors!r}")
    return values


class NeighborSource:
    r"""Mini-batches of sampled subgraphs: every training pair once per
    epoch as the positive of a triplet, in a shuffled order, on the
    neighbourhood PyG's :class:`~torch_geometric.loader.LinkNeighborLoader`
    samples around the batch's users, positives and negatives
    (:obj:`num_neighbors` per hop, over the training graph only, with
    torch-sparse's sampler when pyg-lib is absent).

    The loader's own triplet negatives are uniform over all items and may
    be training positives; :class:`ReplaceNegatives` replaces them with
    :obj:`negatives`: :obj:`"uniform"` (true negatives, as
    :class:`~pyg_mmrec.loader.TripletSource`), :obj:`"popularity"`
    (:class:`PopularityNegatives`), a :obj:`NegativeFn`,
    :obj:`"loader"` (keep the loader's, for comparison only), or
    :obj:`None` (no negatives: (user, positive) pairs, for a negative-free
    recipe such as BM3).

    The shuffled order, the shard of every process (:func:`shard_slices`)
    and the seeds of the neighbour sampling (of the main process, or of each
    loader worker) come from the epoch's generator, so an epoch is a
    function of it; the sampling runs on a random number generator of its
    own, apart from the global one.

    Args:
        graph (PairIndex): The training graph.
        batch_size (int): Triples per batch.
        num_neighbors (str or list): Neighbours per hop, *e.g.*
            :obj:`"10,10"` (see :obj:`parse_num_neighbors`).
        negatives (str or callable, optional): See above.
            (default: :obj:`"uniform"`)
        shard (tuple, optional): :obj:`(rank, world_size)`.
            (default: :obj:`(0, 1)`)
        exclude (PairIndex, optional): The pairs negatives avoid, if not
            :obj:`graph`. (default: :obj:`None`)
        num_workers (int): Loader worker processes. (default: :obj:`0`)
        epoch_edges (callable, optional): Returns the (user, item) pairs
            :obj:`[2, E']` (global ids, training pairs) whose
            neighbourhoods this epoch samples, or :obj:`None` for the
            training graph; called once per epoch when its batches start
            (after the model's
            :meth:`~pyg_mmrec.models.Recommender.on_epoch_start`), *e.g.*
            the edges FREEDOM's pruning kept. The positives stay every training
            pair. (default: :obj:`None`)
    """
    def __init__(self, graph: PairIndex, batch_size: int,
                 num_neighbors: Union[str, Sequence[int]] = (10, 10),
                 negatives: Union[str, NegativeFn, None] = 'uniform',
                 shard: tuple = (0, 1), exclude: Optional[PairIndex] = None,
                 num_workers: int = 0,
                 epoch_edges: Optional[Callable[[], Optional[Tensor]]]
                 = None):
        init_sharded(self, graph, batch_size, shard, exclude)
        self.num_neighbors = parse_num_neighbors(num_neighbors)
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.num_workers = int(num_workers)
        if isinstance(negatives, str):
            if negatives not in NEGATIVES:
                raise ValueError(f"negatives must be one of "
                                 f"{tuple(NEGATIVES)} or a function, got "
                                 f"{negatives!r}")
            self.negatives_name = negatives
            negatives = (None if NEGATIVES[negatives] is None else
                         NEGATIVES[negatives](self.exclude))
        elif negatives is None:
            self.negatives_name = 'none'
        else:
            self.negatives_name = type(negatives).__name__
        self.epoch_edges = epoch_edges
        self.data, self.sampler = self.sampling_graph(self.graph.edge_index)
        self.transform = _Transform(None if negatives is None else
                                    ReplaceNegatives(self.graph, negatives))

    def sampling_graph(self, edge_index: Tensor
                       ) -> Tuple[HeteroData, NeighborSampler]:
        r"""The loader's graph of the (user, item) pairs :obj:`edge_index`
        (both directions) and its neighbour sampler."""
        data = HeteroData()
        data['user'].num_nodes = self.graph.num_users
        data['item'].num_nodes = self.graph.num_items
        data[EDGE_TYPE].edge_index = edge_index
        data[REV_EDGE_TYPE].edge_index = edge_index.flip(0)
        with warnings.catch_warnings():  # "without pyg-lib is deprecated"
            warnings.filterwarnings('ignore', message='.*pyg-lib.*')
            return data, NeighborSampler(data, self.num_neighbors)

    def slices(self) -> List[slice]:
        return shard_slices(self.graph.num_pairs, self.batch_size,
                            self.rank, self.world_size)

    def __len__(self) -> int:
        return len(self.slices())

    def loader(self, edge_label_index: Tensor, seed: int,
               transform: Optional[Callable] = None) -> LinkNeighborLoader:
        r"""The loader of the given (user, item) positives, in order, with
        its sampling seeded by :obj:`seed` (and :obj:`transform` instead of
        the source's own, if given), over this epoch's sampling graph
        (:obj:`epoch_edges`)."""
        data, sampler = self.data, self.sampler
        edges = None if self.epoch_edges is None else self.epoch_edges()
        if edges is not None:
            data, sampler = self.sampling_graph(edges)
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='.*pyg-lib.*')
            return LinkNeighborLoader(
                data, self.num_neighbors,
                edge_label_index=(EDGE_TYPE, edge_label_index),
                # The loader's own triplet negatives only when they are
                # kept: it samples a neighbourhood around each of them.
                neg_sampling=('triplet' if self.negatives_name == 'loader'
                              else None), batch_size=self.batch_size,
                shuffle=False, neighbor_sampler=sampler,
                transform=transform or self.transform,
                num_workers=self.num_workers,
                generator=torch.Generator().manual_seed(seed))

    def batches(self, epoch: int,
                generator: Optional[torch.Generator] = None
                ) -> Iterator[BPRBatch]:
        perm = torch.randperm(self.graph.num_pairs, generator=generator)
        seed = int(torch.randint(2**62, (1, ), generator=generator))
        slices = self.slices()
        if not slices:
            return
        mine = torch.cat([perm[sl] for sl in slices])
        loader = self.loader(self.graph.edge_index[:, mine],
                             seed + self.rank)
        yield from self.seeded_batches(
            loader, seed + self.rank, math.ceil(mine.numel() /
                                                self.batch_size))

    def seeded_batches(self, loader: LinkNeighborLoader, seed: int,
                       num_batches: int) -> Iterator[BPRBatch]:
        r"""The :obj:`num_batches` batches of :obj:`loader`, each drawn on
        the global random number generator (the loader's negatives) seeded
        by :obj:`seed` and then left as it was (loader workers seed
        themselves from the loader's generator)."""
        if self.num_workers > 0:
            yield from loader
            return
        state = torch.Generator().manual_seed(seed).get_state()
        batches = iter(loader)
        for _ in range(num_batches):
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(state)
                batch = next(batches)
                state = torch.get_rng_state()
            yield batch

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(pairs={self.graph.num_pairs}, '
                f'batch_size={self.batch_size}, num_neighbors='
                f'{self.num_neighbors}, negatives={self.negatives_name!r})')
