"""Invariants of the negative samplers, shared by the full-graph and the
mini-batch (LinkNeighborLoader) tests."""
import torch


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
