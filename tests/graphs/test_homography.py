import math

import pytest
import torch

from pyg_mmrec.graphs import PairIndex
from pyg_mmrec.graphs.homography import (
    cooccurrence_topk_graph,
    homography_graphs,
    interest_features,
    similarity_graph,
)

# Users 0-3, items 0-4: u0 {0, 1}, u1 {0, 1, 2}, u2 {2}, u3 {4}; item 3 has
# no user. User co-occurrence counts: (0, 1) = 2, (1, 2) = 1; u3 none.
EDGES = torch.tensor([[0, 0, 1, 1, 1, 2, 3], [0, 1, 0, 1, 2, 2, 4]])


@pytest.fixture
def graph():
    return PairIndex(EDGES, 4, 5)


def dense(adj):
    return adj.to_dense().double()


def test_user_cooccurrence_graph_by_hand(graph):
    a = dense(cooccurrence_topk_graph(graph, 'user', k=2))
    e = math.e
    expected = torch.zeros(4, 4, dtype=torch.float64)
    expected[0, 1] = 1.0  # one co-neighbour, padded with itself: 2 slots
    expected[1, 0] = e**2 / (e**2 + e)  # exactly k: softmax of (2, 1)
    expected[1, 2] = e / (e**2 + e)
    expected[2, 1] = 1.0
    # u3: none; the 2 most-interacted users u1 (3), u0 (2), weights 3/5, 2/5
    w = torch.tensor([0.6, 0.4], dtype=torch.float64).softmax(0)
    expected[3, 1], expected[3, 0] = w[0], w[1]
    torch.testing.assert_close(a, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(a.sum(1), torch.ones(4, dtype=torch.float64),
                               atol=1e-6, rtol=0)


def test_padding_draws_among_the_nodes_own_co_neighbours(graph):
    # u1 has 2 co-neighbours (u0 count 2, u2 count 1) and k = 3: one slot
    # is drawn from them, so the row is one of two softmaxes.
    e = math.e
    outcomes = {
        0: (2 * e**2 / (2 * e**2 + e), e / (2 * e**2 + e)),
        2: (e**2 / (e**2 + 2 * e), 2 * e / (e**2 + 2 * e)),
    }
    seen = set()
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        a = dense(cooccurrence_topk_graph(graph, 'user', 3, gen))
        row = (a[1, 0].item(), a[1, 2].item())
        drawn = min(outcomes, key=lambda j: abs(outcomes[j][0] - row[0]))
        assert row == pytest.approx(outcomes[drawn], abs=1e-6)
        seen.add(drawn)
        assert a.sum(1).tolist() == pytest.approx([1.0] * 4, abs=1e-6)
    assert seen == {0, 2}
    # the same seed, the same graph
    a, b = (dense(cooccurrence_topk_graph(
        graph, 'user', 3, torch.Generator().manual_seed(5))) for _ in '12')
    assert torch.equal(a, b)


def test_item_cooccurrence_top_one_ties_and_lonely_items(graph):
    a = dense(cooccurrence_topk_graph(graph, 'item', k=1))
    # item 0 <-> 1 share 2 users; item 2 ties (1 user with 0 and 1): lower
    # id; items 3 and 4 have none: the most-interacted item (0, degree 2,
    # first of the ties 0, 1, 2).
    expected = torch.zeros(5, 5, dtype=torch.float64)
    expected[0, 1] = expected[1, 0] = expected[2, 0] = 1.0
    expected[3, 0] = expected[4, 0] = 1.0
    torch.testing.assert_close(a, expected)
    with pytest.raises(ValueError, match='side'):
        cooccurrence_topk_graph(graph, 'both', 1)


def test_interest_features_are_the_mean_of_the_training_items(graph):
    x = torch.arange(10.0).view(5, 2)
    u = interest_features(graph, x)
    torch.testing.assert_close(u[0], x[[0, 1]].mean(0))
    torch.testing.assert_close(u[1], x[[0, 1, 2]].mean(0))
    torch.testing.assert_close(u[3], x[4])
    empty = PairIndex(EDGES[:, :2], 4, 5)  # users 1-3 have no item
    assert torch.equal(interest_features(empty, x)[2], torch.zeros(2))


def test_similarity_graph_is_cosine_over_k_mixed_by_the_image_weight():
    gen = torch.Generator().manual_seed(0)
    feats = {'image': torch.randn(6, 4, generator=gen),
             'text': torch.randn(6, 3, generator=gen)}
    k, w = 3, 0.2

    def knn_dense(x):
        xn = torch.nn.functional.normalize(x.double(), dim=1)
        sim = xn @ xn.t()
        out = torch.zeros_like(sim)
        top = sim.topk(k, dim=1).indices
        out.scatter_(1, top, sim.gather(1, top))
        return out / k

    expected = w * knn_dense(feats['image']) + (1 - w) * knn_dense(
        feats['text'])
    got = dense(similarity_graph(feats, k, w))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match='two modalities'):
        similarity_graph({'image': feats['image']}, k, w)


def test_homography_graphs_mix_cooccurrence_and_similarity(graph):
    gen = torch.Generator().manual_seed(1)
    feats = {'image': torch.randn(5, 4, generator=gen),
             'text': torch.randn(5, 3, generator=gen)}
    g_uu, g_ii = homography_graphs(graph, feats, user_k=2, item_k=2,
                                   user_image_weight=0.2,
                                   item_image_weight=0.0, user_co_weight=0.4,
                                   item_co_weight=0.2)
    user_feats = {m: interest_features(graph, x) for m, x in feats.items()}
    expected_uu = (0.4 * dense(cooccurrence_topk_graph(graph, 'user', 2)) +
                   0.6 * dense(similarity_graph(user_feats, 2, 0.2)))
    expected_ii = (0.2 * dense(cooccurrence_topk_graph(graph, 'item', 2)) +
                   0.8 * dense(similarity_graph(feats, 2, 0.0)))
    torch.testing.assert_close(dense(g_uu), expected_uu, atol=1e-6, rtol=0)
    torch.testing.assert_close(dense(g_ii), expected_ii, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match='user_co_weight'):
        homography_graphs(graph, feats, 2, 2, 0.2, 0.0, 1.5, 0.2)


def test_a_zero_weight_skips_its_knn_search_and_keeps_the_graph(
        graph, monkeypatch):
    import pyg_mmrec.graphs.homography as homography
    gen = torch.Generator().manual_seed(2)
    feats = {'image': torch.randn(5, 4, generator=gen),
             'text': torch.randn(5, 3, generator=gen)}
    searched = []
    knn = homography.knn_adjacency

    def counting_knn(x, *args, **kwargs):
        searched.append(x.size(1))
        return knn(x, *args, **kwargs)

    monkeypatch.setattr(homography, 'knn_adjacency', counting_knn)
    text_only = dense(similarity_graph(feats, 2, 0.0))
    assert searched == [3]
    image_only = dense(similarity_graph(feats, 2, 1.0))
    assert searched == [3, 4]
    mixed = dense(similarity_graph(feats, 2, 0.5))
    torch.testing.assert_close(mixed, 0.5 * image_only + 0.5 * text_only,
                               atol=1e-6, rtol=0)
    searched.clear()
    # Co-occurrence weight 1 on both sides: no kNN search at all.
    g_uu, g_ii = homography_graphs(graph, feats, 2, 2, 0.2, 0.0, 1.0, 1.0)
    assert searched == []
    torch.testing.assert_close(
        dense(g_uu), dense(cooccurrence_topk_graph(graph, 'user', 2)))
    torch.testing.assert_close(
        dense(g_ii), dense(cooccurrence_topk_graph(graph, 'item', 2)))
