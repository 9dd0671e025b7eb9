"""Invariants of the negative samplers and the graphs and epochs of the
batch-source tests, shared by the full-graph and the mini-batch
(LinkNeighborLoader) tests."""
import torch

from pyg_mmrec.graphs import PairIndex, bipartite_adjacency


def power_law_graph(num_users=120, num_items=60, num_edges=900, seed=0):
    r"""Training pairs with skewed item degrees (Zipf weights), so that
    popularity negatives differ from uniform ones and pools fill with
    positives."""
    gen = torch.Generator().manual_seed(seed)
    weight = 1.0 / torch.arange(1, num_items + 1).float()
    item = torch.multinomial(weight, num_edges, replacement=True,
                             generator=gen)
    user = torch.randint(num_users, (num_edges, ), generator=gen)
    return PairIndex(torch.stack([user, item]), num_users, num_items)


def random_adjacency(num_users=6, num_items=9, num_edges=25, seed=0):
    r"""The normalised user-item adjacency of uniformly drawn pairs
    (repeats allowed)."""
    gen = torch.Generator().manual_seed(seed)
    pairs = torch.stack([
        torch.randint(num_users, (num_edges, ), generator=gen),
        torch.randint(num_items, (num_edges, ), generator=gen),
    ])
    return bipartite_adjacency(pairs, num_users, num_items)


def epoch(source, seed=0, epoch_=1):
    r"""The batches of one epoch of :obj:`source` under a seeded
    generator."""
    return list(source.batches(epoch_, torch.Generator().manual_seed(seed)))


def top_k_sets(sampler, users, pos, item_emb, generated, k):
    r"""The items a causal sampler with the whole catalogue as its pool
    may return for each (user, positive): the top-:obj:`k` non-positives by
    anchor score."""
    m = torch.sigmoid(-sampler.beta * (sampler.freq[pos] - sampler.freq.mean())
                      / (sampler.freq.std() + 1e-8)).view(-1, 1)
    anchor = item_emb[pos]
    if generated is not None:
        anchor = m * generated[pos] + (1 - m) * anchor
    score = anchor @ item_emb.t()
    score[sampler.is_positive(users.view(-1, 1),
                              torch.arange(item_emb.size(0)).view(1, -1))] = \
        float('-inf')
    top = score.topk(k, dim=1)
    return [set(i for i, s in zip(idx.tolist(), val.tolist()) if s > -1e30)
            for idx, val in zip(top.indices, top.values)]
