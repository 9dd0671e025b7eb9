import math

import pytest
import torch
from torch_geometric.metrics import (
    LinkPredHitRatio,
    LinkPredMAP,
    LinkPredNDCG,
    LinkPredPrecision,
    LinkPredRecall,
)

from pyg_mmrec.train.metrics import (
    METRICS,
    csr_hits,
    key_hits,
    ranking_metrics,
)


def log2(x):
    return math.log2(x)


def test_hand_computed_single_user():
    # Ranked list 3, 1, 4, 0, 5; relevant {0, 1, 2} (P = 3): hits at ranks
    # 2 and 4.
    topk = torch.tensor([[3, 1, 4, 0, 5]])
    rowptr, col = torch.tensor([0, 3]), torch.tensor([2, 0, 1])
    hits = csr_hits(topk, rowptr, col, num_items=6)
    assert hits.tolist() == [[False, True, False, True, False]]

    out = ranking_metrics(hits, torch.tensor([3]), ks=(1, 2, 4, 5),
                          reduce='none')
    expected = {
        'recall@1': 0 / 3,
        'recall@2': 1 / 3,
        'recall@4': 2 / 3,
        'recall@5': 2 / 3,
        'precision@1': 0 / 1,
        'precision@2': 1 / 2,
        'precision@4': 2 / 4,
        'precision@5': 2 / 5,
        'ndcg@1': 0.0,
        'ndcg@2': (1 / log2(3)) / (1 / log2(2) + 1 / log2(3)),
        'ndcg@4': ((1 / log2(3) + 1 / log2(5)) /
                   (1 / log2(2) + 1 / log2(3) + 1 / log2(4))),
        'ndcg@5': ((1 / log2(3) + 1 / log2(5)) /
                   (1 / log2(2) + 1 / log2(3) + 1 / log2(4))),
        # MAP@K = sum_r hit_r * Precision@r / min(P, K):
        'map@1': 0.0,
        'map@2': (1 * 1 / 2) / 2,
        'map@4': (1 * 1 / 2 + 1 * 2 / 4) / 3,
        'map@5': (1 * 1 / 2 + 1 * 2 / 4) / 3,
        'hit@1': 0.0,
        'hit@2': 1.0,
        'hit@4': 1.0,
        'hit@5': 1.0,
    }
    assert set(out) == set(expected)
    for name, value in expected.items():
        assert out[name].shape == (1, )
        assert out[name].item() == pytest.approx(value, abs=1e-12), name


def test_sum_skips_users_without_ground_truth():
    topk = torch.tensor([[0, 1, 2], [0, 1, 2], [2, 1, 0]])
    rowptr = torch.tensor([0, 1, 1, 3])  # user 1 has no relevant items
    col = torch.tensor([1, 0, 2])
    hits = csr_hits(topk, rowptr, col, num_items=3)
    assert hits.tolist() == [[False, True, False], [False, False, False],
                             [True, False, True]]
    per_user = ranking_metrics(hits, rowptr.diff(), ks=(2, ), reduce='none')
    summed = ranking_metrics(hits, rowptr.diff(), ks=(2, ))
    for name in per_user:
        assert per_user[name][1].item() == 0.0
        assert summed[name].item() == pytest.approx(per_user[name].sum())
    assert summed['recall@2'].item() == pytest.approx(1 / 1 + 1 / 2)
    assert summed['ndcg@2'].item() == pytest.approx(
        (1 / log2(3)) / 1 + (1 / log2(2)) / (1 / log2(2) + 1 / log2(3)))


def test_k_larger_than_list_is_clamped():
    topk = torch.tensor([[4, 2, 7]])
    hits = key_hits(topk, torch.tensor([2, 7]), num_items=10)
    out = ranking_metrics(hits, torch.tensor([2]), ks=(3, 20), reduce='none')
    for name in METRICS:
        assert out[f'{name}@20'].item() == out[f'{name}@3'].item()
    # Precision divides by the list length (3), not by K = 20:
    assert out['precision@20'].item() == pytest.approx(2 / 3)


def test_negative_ids_never_hit():
    # Row 1, item -1 has key 1 * 5 - 1 = 4 = key of (row 0, item 4):
    keys = torch.tensor([0 * 5 + 4, 1 * 5 + 2])
    topk = torch.tensor([[4, 3], [-1, 2]])
    assert key_hits(topk, keys, num_items=5).tolist() == [[True, False],
                                                          [False, True]]
    # Offset rows:
    keys = torch.tensor([7 * 5 + 1])
    topk = torch.tensor([[1, 0], [1, 0]])
    assert key_hits(topk, keys, 5, offset=6).tolist() == [[False, False],
                                                         [True, False]]
    assert not key_hits(topk, keys[:0], 5).any()


def test_invalid_arguments():
    hits = torch.zeros(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError):
        ranking_metrics(hits, torch.ones(2), ks=(0, ))
    with pytest.raises(ValueError):
        ranking_metrics(hits, torch.ones(2), metrics=('mrr', ))
    with pytest.raises(ValueError):
        ranking_metrics(hits, torch.ones(2), reduce='mean')
    with pytest.raises(ValueError):
        ranking_metrics(hits[:, :0], torch.ones(2))


def _random_case(num_rows, list_len, num_items, seed):
    gen = torch.Generator().manual_seed(seed)
    topk = torch.rand(num_rows, num_items, generator=gen).argsort(dim=1)
    topk = topk[:, :list_len]
    count = torch.randint(0, 8, (num_rows, ), generator=gen)
    count = count.clamp(max=num_items)
    count[count == 0] = 1
    if num_rows > 1:
        count[0] = 0  # one row without ground truth
    col = torch.cat([
        torch.randperm(num_items, generator=gen)[:c] for c in count.tolist()
    ])
    row = torch.repeat_interleave(torch.arange(num_rows), count)
    rowptr = torch.cat([count.new_zeros(1), count.cumsum(0)])
    return topk, row, col, rowptr, count


def test_hits_match_brute_force():
    topk, row, col, rowptr, count = _random_case(50, 10, 30, seed=1)
    hits = csr_hits(topk, rowptr, col, 30)
    for b in range(50):
        rel = set(col[rowptr[b]:rowptr[b + 1]].tolist())
        assert hits[b].tolist() == [i in rel for i in topk[b].tolist()]


PYG = {
    'recall': LinkPredRecall,
    'ndcg': LinkPredNDCG,
    'precision': LinkPredPrecision,
    'map': LinkPredMAP,
    'hit': LinkPredHitRatio,
}


@pytest.mark.parametrize('num_rows,list_len,num_items', [
    (1, 5, 5),
    (17, 10, 40),
    (64, 20, 25),
    (200, 50, 300),
])
@pytest.mark.parametrize('k', [1, 3, 5, 10, 20, 50])
def test_against_pyg(num_rows, list_len, num_items, k):
    topk, row, col, rowptr, count = _random_case(
        num_rows, list_len, num_items, seed=num_rows * 1000 + k)
    hits = csr_hits(topk, rowptr, col, num_items)
    ours = ranking_metrics(hits, count, ks=(k, ))
    num_eval = int((count > 0).sum())
    edge_label_index = torch.stack([row, col])
    for name, cls in PYG.items():
        metric = cls(k=k)
        metric.update(topk, edge_label_index)
        expected = metric.compute().item()
        value = ours[f'{name}@{k}'].item() / num_eval
        if name == 'precision' and k > list_len:
            # Our one difference: with a list shorter than K, Precision@K
            # divides by the list length L; PyG divides by K.
            assert value * list_len == pytest.approx(expected * k, abs=1e-6)
        else:
            # Recall, NDCG (IDCG over min(P, K)), MAP (denominator
            # min(P, K)) and Hit ratio agree with PyG for every K.
            assert value == pytest.approx(expected, abs=1e-6), name
