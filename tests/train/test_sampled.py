import math

import numpy as np
import pytest
import torch

from pyg_mmrec.data import build_hetero_data, make_synthetic
from pyg_mmrec.data.hetero import INTERACTS, split_edge_index
from pyg_mmrec.graphs.pairs import PairIndex
from pyg_mmrec.train.evaluator import Evaluator
from pyg_mmrec.train.protocols import PROTOCOLS, build_evaluator
from pyg_mmrec.train.sampled import SampledEvaluator, sample_negatives

TRAIN, VAL, TEST = 0, 1, 2

# 3 users, 8 items; every user has exactly 3 items outside their
# interactions, so with num_negatives=3 the negatives of a case are these 3
# items (in a random order) and the ranks below do not depend on the draw.
EDGES = [
    # user 0: train {0, 1}, val {2}, test {3, 4}; free {5, 6, 7}
    (0, 0, TRAIN), (0, 1, TRAIN), (0, 2, VAL), (0, 3, TEST), (0, 4, TEST),
    # user 1: train {1, 5}, val {6, 7}, test {0}; free {2, 3, 4}
    (1, 1, TRAIN), (1, 5, TRAIN), (1, 6, VAL), (1, 7, VAL), (1, 0, TEST),
    # user 2: train {0, 1, 2}, val {3}, test {4}; free {5, 6, 7}
    (2, 0, TRAIN), (2, 1, TRAIN), (2, 2, TRAIN), (2, 3, VAL), (2, 4, TEST),
]
FREE = {0: {5, 6, 7}, 1: {2, 3, 4}, 2: {5, 6, 7}}
SCORES = torch.zeros(3, 8)
SCORES[0, [5, 6, 7]] = torch.tensor([0.5, 0.6, 0.7])
SCORES[0, [2, 3, 4]] = torch.tensor([0.65, 0.9, 0.1])
SCORES[1, [2, 3, 4]] = 0.3  # constant negatives
SCORES[1, [6, 7, 0]] = torch.tensor([0.3, 0.4, 0.2])
SCORES[2, [5, 6, 7]] = torch.tensor([0.5, 0.5, 0.8])
SCORES[2, [3, 4]] = torch.tensor([0.5, 0.6])
# Ranks r (negatives scoring >= the held-out item; ties count against it):
#   val:  (0, 2): 0.65 < 0.7           -> r = 1
#         (1, 6): 0.3 ties all three   -> r = 3 (pessimistic)
#         (1, 7): 0.4 above all        -> r = 0
#         (2, 3): 0.5 ties two, < 0.8  -> r = 3
#   test: (0, 3): 0.9 above all        -> r = 0
#         (0, 4): 0.1 below all        -> r = 3
#         (1, 0): 0.2 below all        -> r = 3
#         (2, 4): 0.6 < 0.8            -> r = 1
RANKS = {'val': [1, 3, 0, 3], 'test': [0, 3, 3, 1]}
KS = (1, 2, 4, 10)  # K = 10 is clamped to 1 + N = 4


def tiny_data():
    u, i, s = (np.array(c) for c in zip(*EDGES))
    return build_hetero_data(u, i, s, num_users=3, num_items=8)


def table_score(users, items):
    return SCORES[users.view(-1, 1), items]


def expected_metrics(ranks):
    # HR@K = 1[r < K], NDCG@K = 1[r < K] / log2(r + 2), mean over cases.
    out = {}
    for k in KS:
        out[f'hit@{k}'] = np.mean([r < k for r in ranks])
        out[f'ndcg@{k}'] = np.mean(
            [1 / math.log2(r + 2) if r < k else 0.0 for r in ranks])
    return out


def test_hand_computed():
    evaluator = SampledEvaluator(tiny_data(), ks=KS, num_negatives=3,
                                 batch_size=3)
    for split in ('val', 'test'):
        users, cand = evaluator.candidates(split)
        gt = split_edge_index(tiny_data(), split)
        # One case per held-out pair; column 0 is the held-out item; the
        # negatives are exactly the user's 3 free items.
        assert users.tolist() == gt[0].tolist()
        assert cand[:, 0].tolist() == gt[1].tolist()
        for u, row in zip(users.tolist(), cand[:, 1:].tolist()):
            assert set(row) == FREE[u]
        assert evaluator.ranks(table_score, split).tolist() == RANKS[split]
        out = evaluator.evaluate(table_score, split)
        assert list(out) == evaluator.metric_names
        assert out == pytest.approx(expected_metrics(RANKS[split]),
                                    abs=1e-12)
    # Written out for val (ranks 1, 3, 0, 3):
    out = evaluator.evaluate(table_score, 'val')
    assert out['hit@1'] == pytest.approx(1 / 4)
    assert out['hit@2'] == pytest.approx(2 / 4)
    assert out['hit@4'] == out['hit@10'] == pytest.approx(1.0)
    assert out['ndcg@2'] == pytest.approx((1 / math.log2(3) + 1) / 4)
    assert out['ndcg@4'] == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(5) + 1 + 1 / math.log2(5)) / 4)
    assert evaluator.users('val').tolist() == [0, 1, 2]


def test_recall_equals_hit_and_metric_errors():
    evaluator = SampledEvaluator(tiny_data(), ks=(1, 2), num_negatives=3,
                                 metrics=('recall', 'hit', 'ndcg'))
    out = evaluator.evaluate(table_score, 'test')
    assert evaluator.metric_names == ['recall@1', 'recall@2', 'hit@1',
                                      'hit@2', 'ndcg@1', 'ndcg@2']
    assert out['recall@1'] == out['hit@1'] and out['recall@2'] == out['hit@2']
    with pytest.raises(ValueError, match='metrics'):
        SampledEvaluator(tiny_data(), num_negatives=3, metrics=('map', ))
    with pytest.raises(ValueError, match='ks'):
        SampledEvaluator(tiny_data(), ks=(0, ), num_negatives=3)
    with pytest.raises(ValueError, match='batch_size'):
        SampledEvaluator(tiny_data(), num_negatives=3, batch_size=0)
    with pytest.raises(ValueError, match='num_negatives'):
        SampledEvaluator(tiny_data(), num_negatives=0)


def test_pessimistic_ties_constant_scorer():
    data = make_synthetic(num_users=200, num_items=300, seed=1)
    evaluator = SampledEvaluator(data, ks=(5, 10, 99, 100), batch_size=64)
    out = evaluator.evaluate(lambda u, i: torch.zeros(i.shape), 'test')
    # Rank N = 99 for every case: a hit only once K > 99.
    assert out['hit@5'] == out['hit@10'] == out['hit@99'] == 0.0
    assert out['hit@100'] == 1.0
    assert out['ndcg@100'] == pytest.approx(1 / math.log2(101))
    # NaN scores count against the held-out item too.
    out = evaluator.evaluate(lambda u, i: torch.full(i.shape, float('nan')))
    assert out['hit@99'] == 0.0


def test_errors():
    evaluator = SampledEvaluator(tiny_data(), num_negatives=3)
    with pytest.raises(ValueError, match='score_fn must return'):
        evaluator.evaluate(lambda u, i: torch.zeros(i.size(0), 2))
    with pytest.raises(ValueError, match='split'):
        evaluator.evaluate(table_score, 'train')
    with pytest.raises(ValueError, match="test_mask 'train'"):
        evaluator.evaluate(table_score, 'test', test_mask='train')
    assert evaluator.evaluate(table_score, 'test', test_mask='train_val') \
        == evaluator.evaluate(table_score, 'test')
    # Every user has 3 candidates only.
    with pytest.raises(ValueError, match='num_negatives=4 .* only 3'):
        SampledEvaluator(tiny_data(), num_negatives=4)


def test_negatives_on_synthetic():
    data = make_synthetic(num_users=300, num_items=250, seed=2)
    evaluator = SampledEvaluator(data, num_negatives=99, seed=7)
    all_pairs = PairIndex(data[INTERACTS].edge_index, 300, 250)
    for split in ('val', 'test'):
        users, cand = evaluator.candidates(split)
        gt = split_edge_index(data, split)
        assert cand.shape == (gt.size(1), 100)
        assert torch.equal(users, gt[0]) and torch.equal(cand[:, 0], gt[1])
        neg = cand[:, 1:]
        # Never a train/val/test item of the user, always a valid item:
        assert not all_pairs.contains(users.view(-1, 1), neg).any()
        assert neg.min() >= 0 and neg.max() < 250
        # Distinct within a row:
        srt = neg.sort(dim=1)[0]
        assert (srt[:, 1:] != srt[:, :-1]).all()

    same = SampledEvaluator(data, num_negatives=99, seed=7)
    other = SampledEvaluator(data, num_negatives=99, seed=8)
    for split in ('val', 'test'):
        assert torch.equal(evaluator.candidates(split)[1],
                           same.candidates(split)[1])
        assert not torch.equal(evaluator.candidates(split)[1],
                               other.candidates(split)[1])
    # Fixed candidates: evaluations are reproducible.
    gen = torch.Generator().manual_seed(3)
    user_emb, item_emb = torch.randn(300, 8, generator=gen), torch.randn(
        250, 8, generator=gen)
    assert evaluator.evaluate_embeddings(user_emb, item_emb) == \
        same.evaluate_embeddings(user_emb, item_emb)


def test_sample_negatives_uniform_and_tight():
    # One user with items {0, 1} among 7: candidates {2, ..., 6}.
    index = PairIndex(torch.tensor([[0, 0], [0, 1]]), 1, 7)
    gen = torch.Generator().manual_seed(0)
    neg = sample_negatives(index, torch.zeros(20000, dtype=torch.long), 3,
                           gen)
    srt = neg.sort(dim=1)[0]
    assert (srt[:, 1:] != srt[:, :-1]).all() and srt.min() >= 2
    # Each item is in a row with probability 3/5; each of the 10 subsets
    # has probability 1/10.
    freq = torch.bincount(neg.view(-1), minlength=7)[2:] / 20000
    assert torch.allclose(freq, torch.full((5, ), 0.6), atol=0.02)
    subsets = torch.unique(srt, dim=0, return_counts=True)[1] / 20000
    assert subsets.numel() == 10
    assert torch.allclose(subsets, torch.full((10, ), 0.1), atol=0.015)
    # As many negatives as candidates: every row is a permutation of them.
    neg = sample_negatives(index, torch.zeros(50, dtype=torch.long), 5, gen)
    assert (neg.sort(dim=1)[0] == torch.arange(2, 7)).all()


def test_batch_size_invariance_and_embeddings():
    data = make_synthetic(num_users=150, num_items=200, seed=3)
    gen = torch.Generator().manual_seed(4)
    user_emb, item_emb = torch.randn(150, 8, generator=gen), torch.randn(
        200, 8, generator=gen)

    def score_fn(users, items):
        return torch.einsum('bd,bcd->bc', user_emb[users], item_emb[items])

    results = [SampledEvaluator(data, batch_size=bs).evaluate(score_fn, s)
               for s in ('val', 'test') for bs in (1, 17, 10_000)]
    for out in results[1:3]:
        assert out == pytest.approx(results[0], abs=1e-12)
    for out in results[4:]:
        assert out == pytest.approx(results[3], abs=1e-12)
    evaluator = SampledEvaluator(data, batch_size=17)
    assert evaluator.evaluate_embeddings(user_emb, item_emb, 'test') == \
        pytest.approx(results[3], abs=1e-12)


class PairModel(torch.nn.Module):
    def __init__(self, num_users, num_items):
        super().__init__()
        gen = torch.Generator().manual_seed(5)
        self.user = torch.nn.Parameter(torch.randn(num_users, 4,
                                                   generator=gen))
        self.item = torch.nn.Parameter(torch.randn(num_items, 4,
                                                   generator=gen))

    def score(self, users, items):
        assert users.device == self.user.device == items.device
        return torch.einsum('bd,bcd->bc', self.user[users], self.item[items])


def test_module_score_method_and_device():
    data = make_synthetic(num_users=100, num_items=150, seed=4)
    model = PairModel(100, 150)
    evaluator = SampledEvaluator(data, batch_size=32)
    expected = evaluator.evaluate_embeddings(model.user, model.item)
    assert evaluator.evaluate(model.score) == pytest.approx(expected,
                                                            abs=1e-12)
    if torch.cuda.is_available():
        out = evaluator.evaluate(model.cuda().score)
        assert evaluator.device.type == 'cuda'
        assert out == pytest.approx(expected, abs=1e-6)
    assert 'num_negatives=99' in repr(evaluator)
    assert evaluator.protocol == 'sampled: 1 held-out + 99 negatives'
    assert evaluator.test_masks == ('train_val', )


def test_build_evaluator_dispatch():
    data = tiny_data()
    assert PROTOCOLS == {'full': Evaluator, 'sampled': SampledEvaluator}
    full = build_evaluator(data, 3, protocol='full', ks=(1, 2),
                           eval_batch_size=2,
                           test_masks=('train_val', 'train'),
                           num_negatives=1000, metric='recall@2')
    assert isinstance(full, Evaluator) and full.protocol == 'full ranking'
    assert full.ks == (1, 2) and full.batch_size == 2
    assert full.test_masks == ('train_val', 'train')
    sampled = build_evaluator(data, 3, protocol='sampled', ks=(1, 2),
                              eval_batch_size=2, test_masks='train_val',
                              num_negatives=3, metric='hit@2')
    assert isinstance(sampled, SampledEvaluator)
    assert (sampled.ks, sampled.batch_size, sampled.num_negatives,
            sampled.seed) == ((1, 2), 2, 3, 3)
    assert sampled.protocol == 'sampled: 1 held-out + 3 negatives'
    # Defaults of each protocol, its selection metric included:
    default = build_evaluator(data, protocol='sampled', num_negatives=3)
    assert default.ks == (5, 10, 20) and default.metric == 'hit@10'
    assert build_evaluator(data).ks == Evaluator(data).ks
    assert build_evaluator(data).metric == 'recall@20'
    assert build_evaluator(data).select_on == 'val'
    chosen = build_evaluator(data, select_on='test', metric='ndcg@10')
    assert (chosen.select_on, chosen.metric) == ('test', 'ndcg@10')
    with pytest.raises(ValueError, match=r"protocol must be one of \('full', "
                       r"'sampled'\), got 'loo'"):
        build_evaluator(data, protocol='loo')
    with pytest.raises(ValueError, match='test_masks.*sampled protocol'):
        build_evaluator(data, protocol='sampled', test_masks=('train', ),
                        num_negatives=3)
    with pytest.raises(ValueError, match='test_masks'):
        build_evaluator(data, protocol='sampled',
                        test_masks=('train_val', 'train'), num_negatives=3)
    with pytest.raises(ValueError, match="metric 'recall@7' is not computed"):
        build_evaluator(data, metric='recall@7')
    with pytest.raises(ValueError, match="select_on must be 'val' or 'test'"):
        build_evaluator(data, select_on='train')
    with pytest.raises(ValueError, match='num_negatives=99'):
        build_evaluator(data, protocol='sampled')
