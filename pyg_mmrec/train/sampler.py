"""Training batches: shuffled (user, positive, negative) triples with
vectorised true-negative sampling."""
from typing import Iterator, NamedTuple, Optional

import torch
from torch import Tensor


class BPRBatch(NamedTuple):
    r"""A batch of :obj:`[B]` user ids, positive and negative item ids."""
    user: Tensor
    pos: Tensor
    neg: Tensor

    def to(self, device) -> 'BPRBatch':
        return BPRBatch(*(t.to(device) for t in self))


def pair_in_keys(keys: Tensor, num_items: int, user: Tensor,
                 item: Tensor) -> Tensor:
    r"""Whether each (broadcast) :obj:`(user, item)` pair is among the sorted
    keys :obj:`user * num_items + item` (a sparse lookup, never a dense
    :obj:`U x I` matrix)."""
    query = user * num_items + item
    if keys.numel() == 0:
        return torch.zeros_like(query, dtype=torch.bool)
    pos = torch.searchsorted(keys, query.contiguous())
    return keys[pos.clamp_(max=keys.numel() - 1)] == query


class NegativeSampler:
    r"""Draws items uniformly at random that are not training positives of
    the given users (true negatives). Validation and test items are *not*
    excluded: that would leak held-out interactions into training.

    Rejection sampling, vectorised: all rejected draws are redrawn together
    until none is left, using a sorted lookup of :obj:`user * I + item`.

    Args:
        train_edge_index (Tensor): Training (user, item) pairs :obj:`[2, E]`.
        num_items (int): Number of items.
        max_rounds (int, optional): Rounds of redraws before giving up; a
            user that has interacted with every item cannot get a negative.
            (default: :obj:`100`)
    """
    def __init__(self, train_edge_index: Tensor, num_items: int,
                 max_rounds: int = 100):
        self.num_items = num_items
        self.max_rounds = max_rounds
        keys = train_edge_index[0] * num_items + train_edge_index[1]
        self.keys = torch.unique(keys)  # sorted

    def is_positive(self, user: Tensor, item: Tensor) -> Tensor:
        r"""Whether each :obj:`(user, item)` is a training interaction."""
        return pair_in_keys(self.keys, self.num_items, user, item)

    def sample(self, user: Tensor,
               generator: Optional[torch.Generator] = None) -> Tensor:
        r"""One true negative per entry of :obj:`user`."""
        neg = torch.randint(self.num_items, user.shape, generator=generator)
        bad = self.is_positive(user, neg).nonzero().view(-1)
        for _ in range(self.max_rounds):
            if bad.numel() == 0:
                return neg
            neg[bad] = torch.randint(self.num_items, bad.shape,
                                     generator=generator)
            bad = bad[self.is_positive(user[bad], neg[bad])]
        raise RuntimeError(
            f"could not draw true negatives for {bad.numel()} training pairs "
            f"after {self.max_rounds} rounds: their users interacted with "
            f"(nearly) every item")


def bpr_batches(train_edge_index: Tensor, sampler: NegativeSampler,
                batch_size: int, generator: Optional[torch.Generator] = None
                ) -> Iterator[BPRBatch]:
    r"""One epoch of shuffled BPR batches over all training pairs; each
    positive gets one fresh true negative."""
    num_edges = train_edge_index.size(1)
    perm = torch.randperm(num_edges, generator=generator)
    user, pos = train_edge_index[:, perm]
    neg = sampler.sample(user, generator)
    for start in range(0, num_edges, batch_size):
        sl = slice(start, start + batch_size)
        yield BPRBatch(user[sl], pos[sl], neg[sl])
