r"""The parts of the DiffMM family (DiffMM, MDMNS, GenRec-V1) that every
member composes: the training graph, the generated graphs and the stage
that trains their generator, the regulariser and DiffMM's views.

It lives in :mod:`pyg_mmrec.models` rather than :mod:`pyg_mmrec.nn`
because it builds a :class:`~pyg_mmrec.models.Stage` (the trainer's unit of
optimisation), which the modules in :mod:`pyg_mmrec.nn` know nothing of;
the denoisers themselves are :mod:`pyg_mmrec.nn` modules.
"""
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import num_items, num_users
from ..graphs import (
    bipartite_adjacency,
    bipartite_degrees,
    csr_dense_rows,
    csr_to_edge_index,
    csr_transpose,
    degree_power,
    generated_adjacency,
    train_graph,
    user_item_matrix,
)
from ..loader import RowBlockSource, Subgraph
from ..nn import sparse_mm
from .base import Stage
from .diffmm_subgraph import (
    GraphBlocks,
    generated_block,
    subgraph_blocks,
    subgraph_nodes,
)

#: Maps a key, users' training rows :obj:`[B, I]` and :math:`k` to their
#: generated items :obj:`[B, k]` (:obj:`-1`: none).
Generate = Callable[[str, Tensor, int], Tensor]


class DiffMMCore(torch.nn.Module):
    r"""What a DiffMM-family recommender shares with the others, composed
    by each (:class:`~pyg_mmrec.models.MDMNS`,
    :class:`~pyg_mmrec.models.GenRec`):

    * **The training graph** in the forms the models read (buffers outside
      the state dict, from the training interactions only): :obj:`adj`,
      the self-looped GCN-normalised :math:`(U + I) \times (U + I)` graph
      :math:`\hat{\mathbf{A}}`; :obj:`interactions`, the binary
      :math:`U \times I` rows the denoisers reconstruct; and the blocks of
      :math:`\hat{\mathbf{A}} = [[\mathbf{S}_u, \mathbf{R}],
      [\mathbf{R}^{\top}, \mathbf{S}_i]]`: :obj:`norm_interactions`
      :math:`\mathbf{R} = \mathbf{R}_{01} / \sqrt{(d_u + 1)(d_i + 1)}`
      (and :obj:`norm_interactions_t`) and the self-loop weights
      :obj:`loop_user`, :obj:`loop_item` :math:`1 / (d + 1)` :obj:`[*, 1]`.
    * **The generated graphs** :math:`\mathbf{G}_k`, one per key (MDMNS:
      one per modality; GenRec-V1: one). Each user's :obj:`rebuild_k`
      generated items are a buffer :obj:`generated_<key>` :obj:`[U, k]`
      (:obj:`-1`: no edge) and :math:`\mathbf{G}_k` is
      :func:`~pyg_mmrec.graphs.generated_adjacency` of them (self-looped,
      GCN-normalised, entries kept with :obj:`keep_rate` under the seed
      :obj:`dropout_seed` plus the key's position); the items and the seed
      are checkpointed, the graphs derived (cached, dropped when a state
      is loaded). :meth:`rebuild` regenerates every key's items with the
      model's :obj:`generate`, :obj:`denoiser_batch_size` users at a time
      (never a dense :math:`U \times I`), and draws a new seed;
      :meth:`graph` generates first if nothing has been yet.
    * **The denoiser stage** (:meth:`stage`): a
      :class:`~pyg_mmrec.models.Stage` over shuffled blocks of
      :obj:`denoiser_batch_size` users' rows
      (:class:`~pyg_mmrec.loader.RowBlockSource`), Adam at
      :obj:`denoiser_lr`, that rebuilds the graphs after every epoch.
    * **The regulariser** (:meth:`reg_terms`): :obj:`reg_weight` times the
      squared norm of whole embedding tables (the originals' :obj:`reg`,
      over every row, not the batch's; on a sampled subgraph, the members
      pass its rows).
    * **DiffMM's modality views** (:meth:`views`), its contrastive views.
    * **Sampled subgraphs**: :meth:`blocks`, :meth:`generated` and
      :meth:`views` of a :class:`~pyg_mmrec.loader.Subgraph` are those of
      its nodes with the full graphs' weights (see
      :mod:`~pyg_mmrec.models.diffmm_subgraph`); :meth:`sampling_graphs`
      are the generated graphs a neighbour source samples.

    Args:
        data (HeteroData): The dataset.
        keys (Sequence[str]): One generated graph per key.
        generate (callable): Maps a key, users' training rows
            :obj:`[B, I]` and :obj:`rebuild_k` to their generated items
            :obj:`[B, rebuild_k]` (:obj:`-1`: none); called without
            gradient.
        rebuild_k (int): Generated items per user. (default: :obj:`1`)
        keep_rate (float): Entry keep rate of the generated graphs.
            (default: :obj:`0.5`)
        denoiser_lr (float): Learning rate of the stage. (default:
            :obj:`1e-3`)
        denoiser_batch_size (int): User rows per step of the stage and per
            block of :meth:`rebuild`. (default: :obj:`1024`)
        reg_weight (float): Weight of :meth:`reg_terms`. (default:
            :obj:`1e-5`)

    Example:
        >>> class OneGraph(Recommender):  # a member with one generated graph
        ...     def __init__(self, data):
        ...         super().__init__(data)
        ...         self.denoiser = Denoiser(self.num_items)
        ...         self.core = DiffMMCore(data, ['items'], self.generate)
        ...
        ...     def generate(self, key, rows, k):  # [B, I] -> [B, k]
        ...         return self.denoiser(rows, ...).topk(k, dim=1).indices
        ...
        ...     def stages(self):  # train, then rebuild G
        ...         return (self.core.stage('denoiser', [self.denoiser],
        ...                                 self.denoiser_loss), )
        ...
        ...     def encode(self, subgraph=None):
        ...         g, g_t = self.core.graph('items')  # first use: generate
        ...         ...
    """
    def __init__(self, data: HeteroData, keys: Sequence[str],
                 generate: Generate, rebuild_k: int = 1,
                 keep_rate: float = 0.5, denoiser_lr: float = 1e-3,
                 denoiser_batch_size: int = 1024, reg_weight: float = 1e-5):
        super().__init__()
        num_u, num_i = num_users(data), num_items(data)
        if not 1 <= rebuild_k <= num_i:
            raise ValueError(f"rebuild_k must be in [1, {num_i}], "
                             f"got {rebuild_k}")
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
        if denoiser_batch_size < 1:
            raise ValueError(f"denoiser_batch_size must be positive, "
                             f"got {denoiser_batch_size}")
        self.num_users, self.num_items = num_u, num_i
        self.keys: List[str] = list(keys)
        self.generate = generate
        self.rebuild_k, self.keep_rate = rebuild_k, keep_rate
        self.denoiser_lr = denoiser_lr
        self.denoiser_batch_size = denoiser_batch_size
        self.reg_weight = reg_weight

        edge_index = train_graph(data).edge_index
        self.register_buffer('adj', bipartite_adjacency(
            edge_index, num_u, num_i, self_loops=True), persistent=False)
        self.register_buffer('interactions', user_item_matrix(
            edge_index, num_u, num_i), persistent=False)
        norm = user_item_matrix(edge_index, num_u, num_i, normalization='sym',
                                self_loops=True)
        self.register_buffer('norm_interactions', norm, persistent=False)
        self.register_buffer('norm_interactions_t', csr_transpose(norm),
                             persistent=False)
        deg_u, deg_i = bipartite_degrees(edge_index, num_u, num_i)
        self.register_buffer('loop_user', 1.0 / (deg_u[:, None] + 1.0),
                             persistent=False)
        self.register_buffer('loop_item', 1.0 / (deg_i[:, None] + 1.0),
                             persistent=False)
        # A subgraph's weights: the degrees and the scales (d + 1)^(-1/2)
        # of the entries of A and R (computed as their builders do).
        self.register_buffer('user_degree', deg_u, persistent=False)
        self.register_buffer('item_degree', deg_i, persistent=False)
        deg = torch.cat([deg_u, deg_i]).to(torch.get_default_dtype())
        self.register_buffer('degree_scale', degree_power(deg + 1, -0.5),
                             persistent=False)
        for key in self.keys:
            self.register_buffer(f'generated_{key}', torch.full(
                (num_u, rebuild_k), -1, dtype=torch.long))
            self.register_buffer(f'graph_{key}', None, persistent=False)
            self.register_buffer(f'graph_{key}_t', None, persistent=False)
            self.register_buffer(f'graph_{key}_diag', None,
                                 persistent=False)
        self.register_buffer('dropout_seed', torch.zeros((), dtype=torch.long))
        self.register_buffer('has_generated', torch.tensor(False))
        self._subgraph_memo: Tuple = (None, {})
        self.register_load_state_dict_post_hook(
            lambda module, _: module.clear_graphs())

    def split(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        r"""The user rows and the item rows of :obj:`x` :obj:`[U + I, *]`."""
        return x[:self.num_users], x[self.num_users:]

    def rows(self, users: Tensor) -> Tensor:
        r"""The dense training rows :obj:`[B, I]` of :obj:`users`."""
        return csr_dense_rows(self.interactions,
                              users.to(self.interactions.device))

    def reg_terms(self, *tables: Tensor) -> Dict[str, Tensor]:
        r""":obj:`{"reg": reg_weight * sum of the tables' squared
        entries}`, or no term when :obj:`reg_weight` is 0."""
        if self.reg_weight <= 0:
            return {}
        total = tables[0].pow(2).sum()
        for table in tables[1:]:
            total = total + table.pow(2).sum()
        return {'reg': self.reg_weight * total}

    def stage(self, name: str, modules: Sequence[torch.nn.Module],
              loss: Callable[[Tensor], Dict[str, Tensor]],
              **kwargs) -> Stage:
        r"""The :class:`~pyg_mmrec.models.Stage` :obj:`name` training
        :obj:`modules` on :obj:`loss` of blocks of users, then (by default,
        :obj:`after`) running :meth:`rebuild`; :obj:`kwargs` are further
        :class:`~pyg_mmrec.models.Stage` arguments."""
        kwargs.setdefault('after', self.rebuild)
        return Stage(name, modules, loss=loss,
                     source=RowBlockSource(self.num_users,
                                           self.denoiser_batch_size),
                     optimizer_kwargs={'lr': self.denoiser_lr}, **kwargs)

    @torch.no_grad()
    def rebuild(self, users: Optional[Tensor] = None) -> None:
        r"""Regenerates every key's items from the training rows of
        :obj:`users` (default: every user; the others keep theirs),
        :obj:`denoiser_batch_size` users at a time, and draws a new
        entry-dropout seed."""
        if users is None:
            users = torch.arange(self.num_users,
                                 device=self.dropout_seed.device)
        for key in self.keys:
            out = getattr(self, f'generated_{key}')
            for block in users.split(self.denoiser_batch_size):
                out[block] = self.generate(key, self.rows(block),
                                           self.rebuild_k)
        self.dropout_seed.fill_(int(torch.randint(2**62, ())))
        self.has_generated.fill_(True)
        self.clear_graphs()

    def clear_graphs(self) -> None:
        r"""Drops the derived graphs (rebuilt by :meth:`graph`)."""
        for key in self.keys:
            setattr(self, f'graph_{key}', None)
            setattr(self, f'graph_{key}_t', None)
            setattr(self, f'graph_{key}_diag', None)
        self._subgraph_memo = (None, {})

    def graph(self, key: str) -> Tuple[Tensor, Tensor]:
        r"""The generated graph :math:`\mathbf{G}_k` of :obj:`key` and its
        transpose (generated first if no :meth:`rebuild` has run)."""
        if not bool(self.has_generated):
            self.rebuild()
        if getattr(self, f'graph_{key}') is None:
            adj = generated_adjacency(
                getattr(self, f'generated_{key}'), self.num_users,
                self.num_items, self.keep_rate,
                int(self.dropout_seed) + self.keys.index(key))
            setattr(self, f'graph_{key}', adj)
            setattr(self, f'graph_{key}_t', csr_transpose(adj))
        return (getattr(self, f'graph_{key}'),
                getattr(self, f'graph_{key}_t'))

    def adj_blocks(self, x_user: Tensor, x_item: Tensor) -> Dict[str, Tensor]:
        r"""The four block products of :math:`\hat{\mathbf{A}}
        [\mathbf{X}_u; \mathbf{X}_i]` (see
        :obj:`GraphBlocks.adj_blocks`; the
        user rows are :obj:`"uu" + "ui"`)."""
        return self.blocks().adj_blocks(x_user, x_item)

    def blocks(self, subgraph: Optional[Subgraph] = None) -> GraphBlocks:
        r"""The training graph's forms on every node, or on
        :obj:`subgraph`'s nodes (its edges, the full graph's weights)."""
        if subgraph is None:
            return GraphBlocks(self.adj, self.norm_interactions,
                               self.norm_interactions_t, self.loop_user,
                               self.loop_item, self.num_users)
        return self._memo(subgraph, 'blocks',
                          lambda: subgraph_blocks(self, subgraph))

    def generated(self, key: str, subgraph: Optional[Subgraph] = None
                  ) -> Tuple[Tensor, Tensor]:
        r""":math:`\mathbf{G}_k` and its transpose (:meth:`graph`), or
        their block on :obj:`subgraph`'s nodes: its sampled entries of the
        graph (:obj:`graph_entries[key]`), else every entry between its
        nodes, with the full graph's values (see
        :obj:`generated_block`)."""
        adj, adj_t = self.graph(key)
        if subgraph is None:
            return adj, adj_t
        entries = (subgraph.graph_entries or {}).get(key)
        return self._memo(subgraph, ('generated', key),
                          lambda: generated_block(
                              adj, self.graph_diagonal(key),
                              subgraph_nodes(subgraph, self.num_users),
                              entries, key))

    def _memo(self, subgraph: Subgraph, name, build: Callable):
        # The blocks of the last subgraph, built once per batch (dropped
        # with the graphs).
        last, blocks = self._subgraph_memo
        if last is not subgraph:
            blocks = {}
            self._subgraph_memo = (subgraph, blocks)
        if name not in blocks:
            blocks[name] = build()
        return blocks[name]

    def graph_diagonal(self, key: str) -> Tensor:
        r"""The diagonal :obj:`[U + I]` of :math:`\mathbf{G}_k` (zero where
        dropped), computed once per graph."""
        if getattr(self, f'graph_{key}_diag') is None:
            adj, _ = self.graph(key)
            (row, col), value = csr_to_edge_index(adj)
            loop = row == col
            diag = value.new_zeros(adj.size(0))
            diag[row[loop]] = value[loop]
            setattr(self, f'graph_{key}_diag', diag)
        return getattr(self, f'graph_{key}_diag')

    def sampling_graphs(self, keys: Optional[Sequence[str]] = None
                        ) -> Dict[str, Tensor]:
        r"""The :math:`\mathbf{G}_k` of :obj:`keys` (default: every key) on
        the CPU (generated first if no :meth:`rebuild` has run), the graphs
        a :class:`~pyg_mmrec.loader.GeneratedGraphNeighborSource`
        samples."""
        keys = self.keys if keys is None else keys
        return {key: self.graph(key)[0].cpu() for key in keys}

    def views(self, encoder: Callable[[Tensor, Tensor], Tensor],
              user_emb: Tensor, features: Mapping[str, Tensor],
              subgraph: Optional[Subgraph] = None
              ) -> Dict[str, Tuple[Tensor, Tensor]]:
        r"""DiffMM's contrastive views :math:`\mathrm{enc}(\mathbf{G}_m
        [\mathbf{E}_u; \mathrm{norm}(\mathbf{F}_m)], \hat{\mathbf{A}})`
        of every modality :math:`m` of :obj:`features` (the keys), as
        :obj:`(user, item)` rows; :obj:`encoder` is called with the rows and
        :obj:`adj` (e.g. a :class:`~pyg_mmrec.nn.LightGCNEncoder`). On a
        :obj:`subgraph` (:obj:`user_emb` and :obj:`features` of its nodes),
        with its :meth:`blocks` and :meth:`generated` graphs."""
        blocks, out = self.blocks(subgraph), {}
        for m, f in features.items():
            adj, adj_t = self.generated(m, subgraph)
            x = sparse_mm(adj, torch.cat([user_emb, F.normalize(f)]), adj_t)
            out[m] = blocks.split(encoder(x, blocks.adj))
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_users={self.num_users}, '
                f'num_items={self.num_items}, keys={self.keys}, '
                f'rebuild_k={self.rebuild_k}, keep_rate={self.keep_rate})')
