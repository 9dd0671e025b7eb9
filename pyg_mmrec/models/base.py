r"""The contract every recommender follows.

A :class:`Recommender` is built from a
:class:`~torch_geometric.data.HeteroData` (it precomputes its graphs from
:func:`~pyg_mmrec.graphs.train_graph`, the training interactions only) and
implements three methods:

* :meth:`~Recommender.encode` maps the full training graph (no argument) or
  a sampled :class:`~pyg_mmrec.loader.Subgraph` to user and item
  representations;
* :meth:`~Recommender.forward` maps a :class:`~pyg_mmrec.loader.BPRBatch`
  to a dict of named loss terms: the trainer calls :obj:`model(batch)`, so a
  :class:`~torch.nn.parallel.DistributedDataParallel` wrapper synchronises
  the gradients, sums the terms and logs each;
* :meth:`~Recommender.score` scores all items, :obj:`[B, I]`, or given
  candidates :obj:`[B, C]`, for the evaluation protocols.

A model that trains more than its main loss (e.g. a denoiser before the
recommender in every epoch) declares it as a :class:`Stage` in
:meth:`~Recommender.stages`; the trainer runs, logs, checkpoints and resumes
every stage the same way.

Example:
    >>> from pyg_mmrec.models import Recommender, get_model, register_model
    >>> from pyg_mmrec.nn import bpr_loss
    >>> from pyg_mmrec.train import Trainer
    >>> @register_model('mf')
    ... class MF(Recommender):
    ...     def __init__(self, data, embedding_dim=64):
    ...         super().__init__(data)
    ...         self.user = torch.nn.Embedding(self.num_users, embedding_dim)
    ...         self.item = torch.nn.Embedding(self.num_items, embedding_dim)
    ...
    ...     def encode(self, subgraph=None):
    ...         if subgraph is None:
    ...             return self.user.weight, self.item.weight
    ...         return self.user(subgraph.user_id), self.item(subgraph.item_id)
    ...
    ...     def forward(self, batch):
    ...         user_emb, item_emb = self.encode(batch.subgraph)
    ...         u, p, n = batch.node_index()
    ...         pos = (user_emb[u] * item_emb[p]).sum(-1)
    ...         neg = (user_emb[u] * item_emb[n]).sum(-1)
    ...         return {'bpr': bpr_loss(pos, neg)}
    >>> model = get_model('mf')(data, embedding_dim=8)
    >>> results = Trainer(model, data, progress=False, epochs=2).fit()
    >>> results['epochs_run'], model.score(torch.tensor([0, 1])).shape
    (2, torch.Size([2, 200]))
"""
import functools
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import num_items, num_users
from ..graphs import (
    bipartite_adjacency,
    bipartite_degrees,
    subgraph_adjacency,
    train_graph,
)
from ..graphs.pairs import PairIndex
from ..loader import (
    BatchSource,
    BPRBatch,
    NeighborSource,
    Subgraph,
    TripletSource,
)


@dataclass
class Stage:
    r"""One optimisation stage of a model, run by the trainer in every
    epoch: its own parameters, optimiser and batches, under the trainer's
    seed, logging, checkpoints and gradient policy (gradients are freed
    right after every step).

    In an epoch the trainer runs the stages whose :obj:`when` is
    :obj:`"before"` (in the order :meth:`Recommender.stages` lists them),
    then the recommender's own batches, whose parameters are all those that
    no stage claims. A stage's epoch is :obj:`before()`, then for each batch
    of :obj:`source` :obj:`loss(batch)` -> backward of the terms' sum ->
    optimiser step, then :obj:`after()` (e.g. to regenerate a graph with
    the freshly trained part); the terms' means are logged under the
    stage's name.

    Args:
        name (str): The stage's name in logs and checkpoints.
        modules (Iterable[torch.nn.Module]): The modules it trains (their
            parameters are excluded from the recommender's optimiser).
        loss (callable): Maps a batch of :obj:`source` to a dict of named
            loss terms.
        source (BatchSource): Its batches.
        optimizer (str): :obj:`"adam"` or :obj:`"adamw"`.
            (default: :obj:`"adam"`)
        optimizer_kwargs (dict): Arguments of the optimiser, *e.g.*
            :obj:`{'lr': 1e-3}`.
        when (str): :obj:`"before"` the recommender's batches.
        before (callable, optional): Called with no argument before the
            stage's epoch (e.g. to compute inputs fixed during it).
        after (callable, optional): Called with no argument after the
            stage's epoch.
        backward_per_term (bool): Run the backward pass of each loss term in
            turn (gradients accumulate in the terms' order) instead of once
            on their sum: for terms on disjoint graphs (one per denoiser),
            each graph is freed before the next backward. Same gradients up
            to the order of the floating-point sums. (default: :obj:`False`)
        offload_dir (str, optional): Keep the modules' tensors and the
            optimiser state in a file in this folder while the stage is
            idle (see :class:`~pyg_mmrec.train.DiskOffload`): results are
            unchanged, peak memory drops by their size.

    Example:
        >>> from pyg_mmrec.loader import RowBlockSource
        >>> denoiser = torch.nn.Linear(200, 200)
        >>> rows = torch.rand(300, 200)  # e.g. each user's interactions
        >>> stage = Stage(
        ...     'denoiser', [denoiser],
        ...     loss=lambda ids: {'mse': (denoiser(rows[ids]) - rows[ids])
        ...                       .pow(2).mean()},
        ...     source=RowBlockSource(300, 128),
        ...     optimizer_kwargs={'lr': 1e-3})
        >>> [p.shape for p in stage.parameters()]
        [torch.Size([200, 200]), torch.Size([200])]

        A model returns it from :meth:`Recommender.stages`; the trainer
        then runs its batches before the model's in every epoch.
    """
    name: str
    modules: Iterable[torch.nn.Module]
    loss: Callable[[Any], Dict[str, Tensor]]
    source: BatchSource
    optimizer: str = 'adam'
    optimizer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    when: str = 'before'
    before: Optional[Callable[[], None]] = None
    after: Optional[Callable[[], None]] = None
    backward_per_term: bool = False
    offload_dir: Optional[str] = None

    def __post_init__(self):
        self.modules = list(self.modules)
        if self.when != 'before':
            raise ValueError(f"stage {self.name!r}: 'when' must be 'before', "
                             f"got {self.when!r}")

    def parameters(self):
        r"""The parameters the stage trains."""
        return [p for m in self.modules for p in m.parameters()
                if p.requires_grad]


def _check_batch_subgraph(module: 'Recommender', args: tuple,
                          kwargs: dict) -> None:
    # The forward pre-hook of every recommender.
    batch = args[0] if args else kwargs.get('batch')
    module.check_subgraph(getattr(batch, 'subgraph', None))


def _checking_subgraph(encode: Callable) -> Callable:
    # A subclass's encode() behind the subgraph check.
    @functools.wraps(encode)
    def checked(self, subgraph: Optional[Subgraph] = None, *args, **kwargs):
        self.check_subgraph(subgraph)
        return encode(self, subgraph, *args, **kwargs)

    checked._checks_subgraph = True
    return checked


class Recommender(torch.nn.Module):
    r"""Base class of the recommenders (see the module docstring for the
    contract).

    In evaluation mode the full-graph representations are computed once and
    reused by every :meth:`score` call until the model goes back to
    training mode (or loads a state).

    A model that encodes the whole graph only (:attr:`supports_subgraph` is
    :obj:`False`) refuses a sampled subgraph with a clear error
    (:meth:`check_subgraph`) in every :meth:`forward` (a forward pre-hook
    reads :obj:`batch.subgraph`) and every :meth:`encode` call (the base
    class checks the subclasses' :meth:`encode` before it runs): the
    models need no check of their own.
    """
    #: Whether the model has parameters to fit with the trainer.
    trainable: bool = True
    #: The attributes :meth:`__repr__` shows besides the graph size.
    repr_settings: Tuple[str, ...] = ()
    #: Whether the model needs item features.
    requires_features: bool = False
    #: Whether :meth:`encode` accepts a sampled subgraph (a model whose
    #: encoder needs the whole graph, e.g. a global diffusion step, says
    #: :obj:`False`).
    supports_subgraph: bool = False
    #: The CLI name (set by :func:`~pyg_mmrec.models.register_model`).
    cli_name: str = ''
    #: The interactions the trainer's negatives avoid, :obj:`"train"` (the
    #: honest rule) or :obj:`"all"` (also validation and test items: only
    #: to reproduce an original that leaks them this way).
    negative_exclusion: str = 'train'
    #: Whether the model's batches carry negatives (:obj:`False`: (user,
    #: positive) pairs, :obj:`batch.neg` is :obj:`None`; a negative-free
    #: recipe such as BM3's, whose sources ignore the negatives setting).
    uses_negatives: bool = True
    #: Whether :obj:`score(users, items)` of a candidate depends on the
    #: other candidates (MCLN's transductive scoring); such scores are not
    #: the full-ranking scores of the candidates, and results say so.
    candidate_dependent: bool = False

    def __init__(self, data: HeteroData):
        super().__init__()
        self.num_users = num_users(data)
        self.num_items = num_items(data)
        self._embedding_cache: Optional[Tuple[Tensor, Tensor]] = None
        self.register_forward_pre_hook(_check_batch_subgraph,
                                       with_kwargs=True)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        encode = cls.__dict__.get('encode')
        if encode is not None and not getattr(encode, '_checks_subgraph',
                                              False):
            cls.encode = _checking_subgraph(encode)

    def encode(self, subgraph: Optional[Subgraph] = None
               ) -> Tuple[Tensor, Tensor]:
        r"""The :obj:`(user_emb, item_emb)` of the training graph (one row
        per user and item) or, given a :obj:`subgraph`, of its nodes (one row
        per :obj:`subgraph.user_id` and :obj:`subgraph.item_id`)."""
        raise NotImplementedError(
            f"{self.__class__.__name__} must implement encode() or score()")

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        r"""The named loss terms of :obj:`batch` (the trainer sums them)."""
        raise NotImplementedError(
            f"{self.__class__.__name__} is trainable but has no forward()")

    def stages(self) -> Tuple[Stage, ...]:
        r"""The model's extra optimisation stages (none by default)."""
        return ()

    def batch_source(self, graph: PairIndex, batch_size: int,
                     shard: Tuple[int, int] = (0, 1),
                     exclude: Optional[PairIndex] = None) -> BatchSource:
        r"""The recommender's batches when the trainer is given none:
        :class:`~pyg_mmrec.loader.TripletSource` (every training pair once
        per epoch) unless the model's recipe samples otherwise."""
        return TripletSource(graph, batch_size, shard=shard, exclude=exclude)

    def neighbor_source(self, graph: PairIndex, batch_size: int, *,
                        num_neighbors: Union[str, Sequence[int]] = '10,10',
                        negatives: str = 'uniform',
                        shard: Tuple[int, int] = (0, 1),
                        exclude: Optional[PairIndex] = None,
                        num_workers: int = 0) -> BatchSource:
        r"""The recommender's mini-batches on sampled subgraphs (the
        trainer's :obj:`sampler='neighbor'`, for a model with
        :attr:`supports_subgraph`):
        :class:`~pyg_mmrec.loader.NeighborSource` (every training pair once
        per epoch as a triplet, on LinkNeighborLoader's neighbourhood of
        its nodes) unless the model's recipe samples otherwise (extra items
        per row, extra edge types). The arguments are those of
        :class:`~pyg_mmrec.loader.NeighborSource`."""
        return NeighborSource(graph, batch_size, num_neighbors=num_neighbors,
                              negatives=negatives, shard=shard,
                              exclude=exclude, num_workers=num_workers)

    def register_training_graph(self, data: HeteroData,
                                **normalization) -> Tensor:
        r"""Registers the normalised training graph
        (:func:`~pyg_mmrec.graphs.bipartite_adjacency` with
        :obj:`normalization`) as the buffer :obj:`adj` and the full graph's
        degrees as :obj:`user_degree` and :obj:`item_degree`, which
        normalise a sampled subgraph the same way
        (:meth:`training_adjacency`); returns the training
        :obj:`edge_index`."""
        edge_index = train_graph(data).edge_index
        self._normalization = dict(normalization)
        self.register_buffer('adj', bipartite_adjacency(
            edge_index, self.num_users, self.num_items, **normalization),
            persistent=False)
        for name, degree in zip(('user_degree', 'item_degree'),
                                bipartite_degrees(edge_index, self.num_users,
                                                  self.num_items)):
            self.register_buffer(name, degree, persistent=False)
        return edge_index

    def training_adjacency(self, subgraph: Optional[Subgraph] = None
                           ) -> Tensor:
        r"""The graph of :meth:`register_training_graph`, or the edges of
        :obj:`subgraph` with the full graph's degrees
        (:func:`~pyg_mmrec.graphs.subgraph_adjacency`)."""
        if subgraph is None:
            return self.adj
        return subgraph_adjacency(subgraph, (self.user_degree,
                                             self.item_degree),
                                  **self._normalization)

    def on_epoch_start(self, epoch: int) -> None:
        r"""Hook called by the trainer before the recommender's batches of
        an epoch (after the :obj:`"before"` stages), *e.g.* edge pruning."""

    def on_epoch_end(self, epoch: int) -> None:
        r"""Hook called by the trainer after each training epoch, before
        evaluation."""

    def check_subgraph(self, subgraph: Optional[Subgraph]) -> None:
        r"""Raises a clear error if :obj:`subgraph` is given to a model that
        encodes the whole graph only (called by the base class before every
        :meth:`forward` and :meth:`encode`)."""
        if subgraph is not None and not self.supports_subgraph:
            raise ValueError(
                f"{self.__class__.__name__} encodes the whole training graph "
                f"and cannot train on sampled subgraphs; use full-graph "
                f"batches")

    def train(self, mode: bool = True) -> 'Recommender':
        self._embedding_cache = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._embedding_cache = None
        return super().load_state_dict(*args, **kwargs)

    def embeddings(self) -> Tuple[Tensor, Tensor]:
        r"""The full-graph :obj:`(user_emb, item_emb)` used for scoring;
        cached in evaluation mode."""
        if self.training:
            return self.encode()
        if self._embedding_cache is None:
            with torch.no_grad():
                self._embedding_cache = self.encode()
        return self._embedding_cache

    def score(self, users: Tensor, items: Optional[Tensor] = None) -> Tensor:
        r"""Scores of all items for :obj:`users` :obj:`[B]`, :obj:`[B, I]`,
        or of the candidates :obj:`items` :obj:`[B, C]`, :obj:`[B, C]`."""
        user_emb, item_emb = self.embeddings()
        u = user_emb[users]
        if items is None:
            return u @ item_emb.t()
        return torch.einsum('bd,bcd->bc', u, item_emb[items])

    def __repr__(self) -> str:
        r"""The one convention of every model: its class, graph size and the
        settings named in :attr:`repr_settings`, *e.g.*
        :obj:`LightGCN(num_users=4000, num_items=3000, embedding_dim=64,
        num_layers=3)` (what a run's :obj:`results.json` records)."""
        parts = [f'num_users={self.num_users}', f'num_items={self.num_items}']
        parts += [f'{key}={getattr(self, key)!r}'
                  for key in self.repr_settings]
        return f"{self.__class__.__name__}({', '.join(parts)})"
