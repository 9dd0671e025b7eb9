r"""The parts of the DiffMM family (DiffMM, MDMNS, GenRec-V1) that every
member composes: the training graph, the generated graphs and the stage
that trains their generator, the regulariser and DiffMM's views.

It lives in :mod:`pyg_mmrec.models` rather than :mod:`pyg_mmrec.nn`
because it builds a :class:`~pyg_mmrec.models.Stage` (the trainer's unit of
optimisation), which the modules in :mod:`pyg_mmrec.nn` know nothing of;
the denoisers themselves are :mod:`pyg_mmrec.nn` modules.
"""
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import num_items, num_users
from ..graphs import (
    bipartite_adjacency,
    bipartite_degrees,
    csr_dense_rows,
    csr_transpose,
    generated_adjacency,
    train_graph,
    user_item_matrix,
)
from ..loader import RowBlockSource
from ..nn import sparse_mm
from .base import Stage

#: Maps a key, users' training rows :obj:`[B, I]` and :math:`k` to their
#: generated items :obj:`[B, k]` (:obj:`-1`: none).
Generate = Callable[[str, Tensor, int], Tensor]


class DiffMMCore(torch.nn.Module):
    r"""What a DiffMM-family recommender shares with the others, composed
    by each (:class:`~pyg_mmrec.models.MDMNS`,
    :class:`~pyg_mmrec.models.GenRec`):

    * **The training graph** in the forms the models read (buffers outside
      the state dict, from the training interactions only): :attr:`adj`,
      the self-looped GCN-normalised :math:`(U + I) \times (U + I)` graph
      :math:`\hat{\mathbf{A}}`; :attr:`interactions`, the binary
      :math:`U \times I` rows the denoisers reconstruct; and the blocks of
      :math:`\hat{\mathbf{A}} = [[\mathbf{S}_u, \mathbf{R}],
      [\mathbf{R}^{\top}, \mathbf{S}_i]]`: :attr:`norm_interactions`
      :math:`\mathbf{R} = \mathbf{R}_{01} / \sqrt{(d_u + 1)(d_i + 1)}`
      (and :attr:`norm_interactions_t`) and the self-loop weights
      :attr:`loop_user`, :attr:`loop_item` :math:`1 / (d + 1)` :obj:`[*, 1]`.
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
      over every row, not the batch's).
    * **DiffMM's modality views** (:meth:`views`), its contrastive views.

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
        for key in self.keys:
            self.register_buffer(f'generated_{key}', torch.full(
                (num_u, rebuild_k), -1, dtype=torch.long))
            self.register_buffer(f'graph_{key}', None, persistent=False)
            self.register_buffer(f'graph_{key}_t', None, persistent=False)
        self.register_buffer('dropout_seed', torch.zeros((), dtype=torch.long))
        self.register_buffer('has_generated', torch.tensor(False))
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
    def rebuild(self) -> None:
        r"""Regenerates every key's items from every user's training row,
        :obj:`denoiser_batch_size` users at a time, and draws a new
        entry-dropout seed."""
        users = torch.arange(self.num_users, device=self.dropout_seed.device)
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
        [\mathbf{X}_u; \mathbf{X}_i]`: :obj:`"uu"` :math:`\mathbf{S}_u
        \mathbf{X}_u` and :obj:`"ui"` :math:`\mathbf{R} \mathbf{X}_i` (its
        user rows are their sum), :obj:`"iu"` :math:`\mathbf{R}^{\top}
        \mathbf{X}_u` and :obj:`"ii"` :math:`\mathbf{S}_i \mathbf{X}_i`."""
        return {'uu': self.loop_user * x_user, 'ii': self.loop_item * x_item,
                'ui': sparse_mm(self.norm_interactions, x_item,
                                self.norm_interactions_t),
                'iu': sparse_mm(self.norm_interactions_t, x_user,
                                self.norm_interactions)}

    def views(self, encoder: Callable[[Tensor, Tensor], Tensor],
              user_emb: Tensor, features: Mapping[str, Tensor]
              ) -> Dict[str, Tuple[Tensor, Tensor]]:
        r"""DiffMM's contrastive views :math:`\mathrm{enc}(\mathbf{G}_m
        [\mathbf{E}_u; \mathrm{norm}(\mathbf{F}_m)], \hat{\mathbf{A}})`
        of every modality :math:`m` of :obj:`features` (the keys), as
        :obj:`(user, item)` rows; :obj:`encoder` is called with the rows and
        :attr:`adj` (e.g. a :class:`~pyg_mmrec.nn.LightGCNEncoder`)."""
        out = {}
        for m, f in features.items():
            adj, adj_t = self.graph(m)
            x = sparse_mm(adj, torch.cat([user_emb, F.normalize(f)]), adj_t)
            out[m] = self.split(encoder(x, self.adj))
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_users={self.num_users}, '
                f'num_items={self.num_items}, keys={self.keys}, '
                f'rebuild_k={self.rebuild_k}, keep_rate={self.keep_rate})')
