r"""The sorted index of (user, item) pairs every sampler, graph builder and
the evaluator share, and the one owner of a dataset's training graph."""
import copy
import weakref
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import (
    INTERACTS,
    SPLITS,
    num_items,
    num_users,
    split_edge_index,
)
from .bipartite import unique_pairs


class PairIndex(torch.nn.Module):
    r"""A set of distinct (user, item) pairs as the sorted keys
    :math:`u \cdot I + i`: membership by binary search, per-user ranges
    (CSR), degrees, and exactly uniform negatives, never a dense
    :math:`U \times I` matrix.

    Negatives are drawn by inverse transform, without rejection: with
    :math:`p_0 < p_1 < \dots` a user's items, :math:`p_j - j` counts the
    non-items before :math:`p_j`, so the :math:`r`-th non-item of the user
    is :math:`r + |\{j : p_j - j \le r\}|`, one binary search in the sorted
    keys :math:`u (I + 1) + (p_j - j)`.

    A module without parameters: its tensors are buffers (not in the
    :obj:`state_dict`), so an index owned by a model follows the model's
    device. The shared index of :func:`train_graph` must not be moved in
    place: ask :func:`train_graph` for another device, or :meth:`copy` it.

    Args:
        edge_index (torch.Tensor): (user, item) pairs :obj:`[2, E]`;
            duplicates are collapsed.
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.

    Example:
        >>> index = PairIndex(torch.tensor([[0, 0, 1], [1, 2, 0]]), 2, 3)
        >>> index.contains(torch.tensor([0, 1]), torch.tensor([2, 2]))
        tensor([ True, False])
    """
    def __init__(self, edge_index: Tensor, num_users: int, num_items: int):
        super().__init__()
        if num_items < 1:
            raise ValueError(f"'num_items' must be positive (got {num_items})")
        self.num_users, self.num_items = int(num_users), int(num_items)
        edge_index = unique_pairs(edge_index, num_users, num_items)
        user, item = edge_index
        keys = user * num_items + item
        counts = torch.bincount(user, minlength=num_users)
        ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        rank = torch.arange(keys.numel(), device=user.device) - ptr[user]
        # The distinct pairs [2, E], sorted by user then item; their sorted
        # keys u * I + i; the CSR row pointer (the items of user u are
        # edge_index[1, ptr[u]:ptr[u + 1]]); the gap keys of the negatives.
        for name, value in (('edge_index', edge_index), ('keys', keys),
                            ('ptr', ptr),
                            ('gap_keys', user * (num_items + 1) +
                             (item - rank))):
            self.register_buffer(name, value, persistent=False)

    @property
    def num_pairs(self) -> int:
        return self.keys.numel()

    @property
    def device(self) -> torch.device:
        return self.keys.device

    def copy(self) -> 'PairIndex':
        r"""An independent copy (e.g. for a module to own and move)."""
        return copy.deepcopy(self)

    def user_degree(self) -> Tensor:
        r"""The number of items of every user :obj:`[U]`."""
        return self.ptr[1:] - self.ptr[:-1]

    def item_degree(self) -> Tensor:
        r"""The number of users of every item :obj:`[I]`."""
        return torch.bincount(self.edge_index[1], minlength=self.num_items)

    def item_csr(self) -> Tuple[Tensor, Tensor]:
        r"""The pairs item-major: :obj:`(ptr, order)` with the users of item
        :math:`i` at :obj:`edge_index[0, order[ptr[i]:ptr[i + 1]]]`
        (:obj:`order` are positions in :obj:`edge_index`, by item, then
        user)."""
        item = self.edge_index[1]
        order = torch.argsort(item, stable=True)
        ptr = torch.zeros(self.num_items + 1, dtype=torch.long,
                          device=item.device)
        ptr[1:] = torch.bincount(item, minlength=self.num_items).cumsum(0)
        return ptr, order

    def contains(self, user: Tensor, item: Tensor) -> Tensor:
        r"""Whether each (broadcast) :obj:`(user, item)` is in the index."""
        query = (user * self.num_items + item).contiguous()
        if self.keys.numel() == 0:
            return torch.zeros_like(query, dtype=torch.bool)
        pos = torch.searchsorted(self.keys, query)
        return self.keys[pos.clamp_(max=self.keys.numel() - 1)] == query

    def uniform_negatives(self, users: Tensor,
                          generator: Optional[torch.Generator] = None
                          ) -> Tensor:
        r"""One item per entry of :obj:`users`, uniform over the items that
        are *not* paired with that user (inverse transform: one uniform draw
        per entry, no loop).

        Raises:
            RuntimeError: If a user is paired with every item.
        """
        users = users.long().to(self.device)
        # The users' degrees only: an [U] temporary per call fragments the
        # heap when batches are kept (MCLN's epoch of steps at 1M users).
        free = self.num_items - (self.ptr[users + 1] - self.ptr[users])
        if bool((free <= 0).any()):
            bad = users[free <= 0].unique().tolist()
            raise RuntimeError(f"users {bad[:10]} interacted with every item; "
                               f"they have no negative")
        u = torch.rand(users.shape, generator=generator, device=self.device)
        r = (u * free).long().clamp_(max=free - 1)
        below = torch.searchsorted(self.gap_keys,
                                   users * (self.num_items + 1) + r,
                                   right=True)
        return r + (below - self.ptr[users])

    def extra_repr(self) -> str:
        return (f'num_users={self.num_users}, '
                f'num_items={self.num_items}, num_pairs={self.num_pairs}')


_CACHE: Dict[Tuple, Tuple[weakref.ref, PairIndex]] = {}


def _cached(data: HeteroData, split: Optional[str], device) -> PairIndex:
    # The index of one split's pairs (every pair when `split` is None),
    # cached per dataset object and rebuilt if its edges or masks change.
    store = data[INTERACTS]
    if device is None:
        device = store.edge_index.device
    edge_index = store.edge_index
    mask = None if split is None else store[f'{split}_mask']
    key = (id(data), split, id(edge_index), edge_index._version,
           id(mask), None if mask is None else mask._version, str(device))
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is data:
        return hit[1]
    pairs = edge_index if mask is None else split_edge_index(data, split)
    index = PairIndex(pairs.to(device), num_users(data), num_items(data))
    _CACHE[key] = (weakref.ref(data), index)
    weakref.finalize(data, _CACHE.pop, key, None)
    return index


def split_graph(data: HeteroData, split: str = 'train',
                device=None) -> PairIndex:
    r"""The :class:`PairIndex` of one split's interactions, built once per
    dataset object (and rebuilt if its edges or masks change), on
    :obj:`device` (default: the data's)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return _cached(data, split, device)


def interaction_graph(data: HeteroData, device=None) -> PairIndex:
    r"""The :class:`PairIndex` of every interaction, all splits together
    (cached like :func:`split_graph`): what the sampled evaluation protocol
    keeps its negatives out of. Never a training graph."""
    return _cached(data, None, device)


def train_graph(data: HeteroData, device=None) -> PairIndex:
    r"""The training graph of :obj:`data`: the one owner of the training
    interactions that models, samplers, batch sources and the evaluator's
    masks all read, built from :obj:`train_mask` alone so that no
    validation or test pair can reach it (see :func:`split_graph`)."""
    return split_graph(data, 'train', device)
