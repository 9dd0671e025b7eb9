import math

import numpy as np
import pytest
import torch
from torch_geometric.metrics import (
    LinkPredHitRatio,
    LinkPredMAP,
    LinkPredNDCG,
    LinkPredPrecision,
    LinkPredRecall,
)

from pyg_mmrec.data.hetero import build_hetero_data, split_edge_index
from pyg_mmrec.testing import with_cuda
from pyg_mmrec.train import Evaluator

TRAIN, VAL, TEST = 0, 1, 2


def log2(x):
    return math.log2(x)


# 3 users, 6 items. (user, item, split):
EDGES = [
    (0, 0, TRAIN), (0, 2, VAL), (0, 1, TEST), (0, 4, TEST),
    (1, 5, TRAIN), (1, 4, TRAIN), (1, 3, VAL), (1, 0, TEST),
    (2, 1, TRAIN), (2, 2, TEST), (2, 3, TEST),  # user 2: no validation item
]
SCORES = torch.tensor([
    [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    [0.3, 0.9, 0.8, 0.1, 0.2, 0.7],
])


def small_data():
    u, i, s = (np.array(c) for c in zip(*EDGES))
    return build_hetero_data(u, i, s, num_users=3, num_items=6)


class Recorder:
    def __init__(self, scores):
        self.scores = scores
        self.calls = []

    def __call__(self, users):
        self.calls.append(users.clone())
        return self.scores[users]


def test_ranked_lists_and_masking():
    evaluator = Evaluator(small_data(), ks=(1, 2, 3, 5))
    # Validation: training items masked, test items are not (user 0's test
    # item 1 is ranked first). User 2 has no validation item: not evaluated.
    users, ranked = evaluator.topk(Recorder(SCORES), 'val')
    assert users.tolist() == [0, 1]
    assert ranked.tolist() == [
        [1, 2, 3, 4, 5],
        [3, 2, 1, 0, -1],  # only 4 candidates: one empty slot
    ]
    # Test: training and validation items masked (user 0's item 2, user 1's
    # item 3 are gone).
    users, ranked = evaluator.topk(Recorder(SCORES), 'test')
    assert users.tolist() == [0, 1, 2]
    assert ranked.tolist() == [
        [1, 3, 4, 5, -1],
        [2, 1, 0, -1, -1],
        [2, 5, 0, 4, 3],
    ]


def test_hand_computed_val():
    rec = Recorder(SCORES)
    out = Evaluator(small_data(), ks=(1, 2, 3, 5)).evaluate(rec, 'val')
    assert torch.cat(rec.calls).tolist() == [0, 1]  # user 2 skipped
    # User 0: ranked [1, 2, 3, 4, 5], relevant {2}: hits [0, 1, 0, 0, 0].
    # User 1: ranked [3, 2, 1, 0, -], relevant {3}: hits [1, 0, 0, 0, 0].
    expected = {
        'recall@1': (0 + 1) / 2,
        'recall@2': (1 + 1) / 2,
        'recall@5': (1 + 1) / 2,
        'ndcg@1': (0 + 1) / 2,
        'ndcg@2': ((1 / log2(3)) / (1 / log2(2)) + 1) / 2,
        'ndcg@5': ((1 / log2(3)) / (1 / log2(2)) + 1) / 2,
        'precision@1': (0 / 1 + 1 / 1) / 2,
        'precision@2': (1 / 2 + 1 / 2) / 2,
        'precision@3': (1 / 3 + 1 / 3) / 2,
        'precision@5': (1 / 5 + 1 / 5) / 2,
        'map@1': (0 + 1 * 1 / 1) / 2,
        'map@2': ((1 * 1 / 2) / 1 + 1) / 2,
        'map@5': ((1 * 1 / 2) / 1 + 1) / 2,
        'hit@1': (0 + 1) / 2,
        'hit@2': (1 + 1) / 2,
    }
    assert len(out) == 5 * 4
    for name, value in expected.items():
        assert out[name] == pytest.approx(value, abs=1e-12), name


def test_hand_computed_test():
    out = Evaluator(small_data(), ks=(1, 2, 3, 5)).evaluate(
        Recorder(SCORES), 'test')
    # User 0: ranked [1, 3, 4, 5, -], relevant {1, 4}: hits [1, 0, 1, 0, 0].
    # User 1: ranked [2, 1, 0, -, -], relevant {0}: hits [0, 0, 1, 0, 0].
    # User 2: ranked [2, 5, 0, 4, 3], relevant {2, 3}: hits [1, 0, 0, 0, 1].
    idcg2 = 1 / log2(2) + 1 / log2(3)
    expected = {
        'recall@1': (1 / 2 + 0 + 1 / 2) / 3,
        'recall@2': (1 / 2 + 0 + 1 / 2) / 3,
        'recall@3': (2 / 2 + 1 / 1 + 1 / 2) / 3,
        'recall@5': (2 / 2 + 1 / 1 + 2 / 2) / 3,
        'ndcg@1': (1 + 0 + 1) / 3,
        'ndcg@2': (1 / idcg2 + 0 + 1 / idcg2) / 3,
        'ndcg@3': ((1 + 1 / log2(4)) / idcg2 + (1 / log2(4)) / 1 +
                   1 / idcg2) / 3,
        'ndcg@5': ((1 + 1 / log2(4)) / idcg2 + (1 / log2(4)) / 1 +
                   (1 + 1 / log2(6)) / idcg2) / 3,
        'precision@1': (1 + 0 + 1) / 3,
        'precision@3': (2 / 3 + 1 / 3 + 1 / 3) / 3,
        'precision@5': (2 / 5 + 1 / 5 + 2 / 5) / 3,
        'map@1': (1 + 0 + 1) / 3,
        'map@2': ((1 * 1 / 1) / 2 + 0 + (1 * 1 / 1) / 2) / 3,
        'map@3': ((1 * 1 / 1 + 1 * 2 / 3) / 2 + (1 * 1 / 3) / 1 +
                  (1 * 1 / 1) / 2) / 3,
        'map@5': ((1 * 1 / 1 + 1 * 2 / 3) / 2 + (1 * 1 / 3) / 1 +
                  (1 * 1 / 1 + 1 * 2 / 5) / 2) / 3,
        'hit@1': (1 + 0 + 1) / 3,
        'hit@3': (1 + 1 + 1) / 3,
    }
    for name, value in expected.items():
        assert out[name] == pytest.approx(value, abs=1e-12), name


def random_data(num_users, num_items, num_edges, seed=0):
    rng = np.random.default_rng(seed)
    key = rng.choice(num_users * num_items, num_edges, replace=False)
    split = rng.choice(3, num_edges, p=[0.6, 0.2, 0.2])
    split[:3] = [0, 1, 2]
    return build_hetero_data(key // num_items, key % num_items, split,
                             num_users, num_items)


def reference(data, scores, split, ks):
    r"""Per-user Python loop, written independently of the library."""
    train = split_edge_index(data, 'train').t().tolist()
    masked = {tuple(e) for e in train}
    if split == 'test':
        val = split_edge_index(data, 'val').t().tolist()
        masked |= {tuple(e) for e in val}
    truth = {}
    for u, i in split_edge_index(data, split).t().tolist():
        truth.setdefault(u, set()).add(i)
    sums = {}
    for u, rel in truth.items():
        cand = [i for i in range(scores.size(1)) if (u, i) not in masked]
        ranked = sorted(cand, key=lambda i: -scores[u, i].item())
        for k in ks:
            top = ranked[:min(k, scores.size(1))]
            kk = min(k, scores.size(1))
            h = [int(i in rel) for i in top]
            dcg = sum(x / log2(r + 2) for r, x in enumerate(h))
            idcg = sum(1 / log2(r + 2) for r in range(min(len(rel), kk)))
            ap = sum(x * sum(h[:r + 1]) / (r + 1) for r, x in enumerate(h))
            vals = dict(recall=sum(h) / len(rel), ndcg=dcg / idcg,
                        precision=sum(h) / kk, map=ap / min(len(rel), kk),
                        hit=float(sum(h) > 0))
            for m, v in vals.items():
                sums[f'{m}@{k}'] = sums.get(f'{m}@{k}', 0.0) + v
    return {name: v / len(truth) for name, v in sums.items()}


@pytest.mark.parametrize('num_users,num_items,num_edges,ks', [
    (20, 15, 120, (1, 5, 10)),
    (50, 8, 200, (2, 5, 20)),  # fewer items than max(ks)
    (120, 60, 1500, (5, 10, 20, 50)),
])
@pytest.mark.parametrize('split', ['val', 'test'])
def test_against_reference(num_users, num_items, num_edges, ks, split):
    data = random_data(num_users, num_items, num_edges, seed=num_users)
    scores = torch.randn(num_users, num_items,
                         generator=torch.Generator().manual_seed(1))
    out = Evaluator(data, ks=ks, batch_size=7).evaluate(
        lambda u: scores[u], split)
    expected = reference(data, scores, split, ks)
    assert set(out) == set(expected)
    for name, value in expected.items():
        assert out[name] == pytest.approx(value, abs=1e-9), name


@pytest.mark.parametrize('split', ['val', 'test'])
def test_batch_size_invariance(split):
    data = random_data(200, 80, 3000, seed=3)
    scores = torch.randn(200, 80, generator=torch.Generator().manual_seed(2))
    results = [
        Evaluator(data, batch_size=bs).evaluate(lambda u: scores[u], split)
        for bs in (1, 13, 10_000)
    ]
    for out in results[1:]:
        assert out.keys() == results[0].keys()
        for name in out:
            assert out[name] == pytest.approx(results[0][name], abs=1e-12)


@pytest.mark.parametrize('split', ['val', 'test'])
def test_masking_is_effective(split):
    # Training items (and, for test, validation items) get the highest
    # scores. Without masking they would fill every ranked list.
    data = random_data(100, 60, 2500, seed=4)
    known = split_edge_index(data, 'train')
    if split == 'test':
        known = torch.cat([known, split_edge_index(data, 'val')], dim=1)
    noise = torch.rand(100, 60, generator=torch.Generator().manual_seed(5))
    adversarial = noise.clone()
    adversarial[known[0], known[1]] = 1e6
    harmless = noise.clone()
    harmless[known[0], known[1]] = -1e6

    evaluator = Evaluator(data, ks=(5, 10, 20), batch_size=32)
    users, ranked = evaluator.topk(lambda u: adversarial[u], split)
    is_known = torch.zeros(100, 60, dtype=torch.bool)
    is_known[known[0], known[1]] = True
    slot = ranked >= 0
    assert not is_known[users.view(-1, 1).expand_as(ranked)[slot],
                        ranked[slot]].any()
    # The scores of masked items cannot change the result:
    out_adv = evaluator.evaluate(lambda u: adversarial[u], split)
    out_ok = evaluator.evaluate(lambda u: harmless[u], split)
    assert out_adv == out_ok
    assert out_adv['recall@20'] > 0


def test_val_items_masked_only_for_test():
    data = random_data(60, 40, 1200, seed=6)
    val = split_edge_index(data, 'val')
    test = split_edge_index(data, 'test')
    # Validation and test items score highest:
    scores = torch.rand(60, 40, generator=torch.Generator().manual_seed(7))
    scores[val[0], val[1]] += 10
    scores[test[0], test[1]] += 10
    evaluator = Evaluator(data, ks=(5, ))

    users, ranked = evaluator.topk(lambda u: scores[u], 'test')
    is_val = torch.zeros(60, 40, dtype=torch.bool)
    is_val[val[0], val[1]] = True
    rows = users.view(-1, 1).expand_as(ranked)
    assert not is_val[rows, ranked.clamp(min=0)][ranked >= 0].any()

    # Test items stay candidates at validation time: they are ranked first.
    users, ranked = evaluator.topk(lambda u: scores[u], 'val')
    is_test = torch.zeros(60, 40, dtype=torch.bool)
    is_test[test[0], test[1]] = True
    rows = users.view(-1, 1).expand_as(ranked)
    assert is_test[rows, ranked.clamp(min=0)][ranked >= 0].any()
    assert evaluator.evaluate(lambda u: scores[u], 'test')['recall@5'] > 0.5


def test_against_pyg_metrics():
    data = random_data(150, 70, 3000, seed=8)
    scores = torch.randn(150, 70, generator=torch.Generator().manual_seed(9))
    ks = (1, 5, 10, 20)
    evaluator = Evaluator(data, ks=ks, batch_size=64)
    for split in ('val', 'test'):
        out = evaluator.evaluate(lambda u: scores[u], split)
        users, ranked = evaluator.topk(lambda u: scores[u], split)
        pos = torch.full((150, ), -1)
        pos[users] = torch.arange(users.numel())
        gt = split_edge_index(data, split)
        edge_label_index = torch.stack([pos[gt[0]], gt[1]])
        for name, cls in [('recall', LinkPredRecall), ('ndcg', LinkPredNDCG),
                          ('precision', LinkPredPrecision),
                          ('map', LinkPredMAP), ('hit', LinkPredHitRatio)]:
            for k in ks:
                metric = cls(k=k)
                metric.update(ranked, edge_label_index)
                assert out[f'{name}@{k}'] == pytest.approx(
                    metric.compute().item(), abs=1e-6), f'{name}@{k}'


def test_evaluate_embeddings():
    data = random_data(90, 50, 1500, seed=10)
    gen = torch.Generator().manual_seed(11)
    user_emb, item_emb = torch.randn(90, 8, generator=gen), torch.randn(
        50, 8, generator=gen)
    user_emb.requires_grad_()  # e.g. a model's parameters
    evaluator = Evaluator(data, batch_size=16)
    for split in ('val', 'test'):
        expected = evaluator.evaluate(lambda u: user_emb[u] @ item_emb.t(),
                                      split)
        out = evaluator.evaluate_embeddings(user_emb, item_emb, split)
        assert out == pytest.approx(expected, abs=1e-12)


def test_fewer_items_than_k():
    data = random_data(30, 4, 80, seed=12)
    evaluator = Evaluator(data, ks=(2, 5, 50))
    assert evaluator.max_k == 4
    users, ranked = evaluator.topk(lambda u: torch.rand(u.numel(), 4), 'val')
    assert ranked.shape == (users.numel(), 4)
    out = evaluator.evaluate(lambda u: torch.rand(u.numel(), 4), 'val')
    # Every candidate is listed: all relevant items are found.
    assert out['recall@5'] == out['recall@50'] == pytest.approx(1.0)
    assert out['hit@50'] == pytest.approx(1.0)


def test_grad_and_errors():
    data = random_data(20, 10, 100, seed=13)
    evaluator = Evaluator(data)
    emb = torch.randn(20, 10, requires_grad=True)
    out = evaluator.evaluate(lambda u: emb[u] * 2, 'val')
    assert all(math.isfinite(v) for v in out.values())
    with pytest.raises(ValueError):
        evaluator.evaluate(lambda u: emb[u], 'train')
    with pytest.raises(ValueError):
        evaluator.evaluate(lambda u: emb[u, :5], 'val')
    with pytest.raises(ValueError):
        Evaluator(data, ks=(0, 5))
    with pytest.raises(ValueError):
        Evaluator(data, metrics=('auc', ))
    with pytest.raises(ValueError):
        Evaluator(data, batch_size=0)


def test_metric_subset_and_keys():
    data = random_data(20, 10, 100, seed=14)
    evaluator = Evaluator(data, ks=(3, 7), metrics=('ndcg', 'recall'))
    out = evaluator.evaluate(lambda u: torch.rand(u.numel(), 10), 'test')
    assert list(out) == ['ndcg@3', 'ndcg@7', 'recall@3', 'recall@7']
    assert evaluator.metric_names == list(out)


class DotModel(torch.nn.Module):
    def __init__(self, num_users, num_items, dim=8):
        super().__init__()
        self.user = torch.nn.Embedding(num_users, dim)
        self.item = torch.nn.Embedding(num_items, dim)

    def score(self, users):
        return self.user(users) @ self.item.weight.t()


def test_module_score_method():
    data = random_data(40, 30, 500, seed=17)
    model = DotModel(40, 30)
    evaluator = Evaluator(data, batch_size=8)
    for split in ('val', 'test'):
        out = evaluator.evaluate(model.score, split)
        expected = evaluator.evaluate_embeddings(model.user.weight,
                                                 model.item.weight, split)
        assert out == pytest.approx(expected, abs=1e-12)


@with_cuda
def test_cuda_matches_cpu():
    data = random_data(300, 120, 6000, seed=15)
    gen = torch.Generator().manual_seed(16)
    user_emb, item_emb = torch.randn(300, 16, generator=gen), torch.randn(
        120, 16, generator=gen)
    cpu = Evaluator(data, batch_size=64)
    gpu = Evaluator(data, batch_size=64).to('cuda')
    for split in ('val', 'test'):
        expected = cpu.evaluate_embeddings(user_emb, item_emb, split)
        out = gpu.evaluate_embeddings(user_emb.cuda(), item_emb.cuda(), split)
        assert gpu.users(split).is_cuda
        assert out == pytest.approx(expected, abs=1e-6)
        # A module's score method: users are sent to the module's device.
        model = DotModel(300, 120).cuda()
        cpu_out = cpu.evaluate(model.cpu().score, split)
        gpu_out = Evaluator(data).evaluate(model.cuda().score, split)
        assert gpu_out == pytest.approx(cpu_out, abs=1e-6)


def test_test_mask_train_lets_validation_items_be_recommended():
    # MMRec's / DiffMM's rule: only training items are masked at test.
    evaluator = Evaluator(small_data(), ks=(1, 2, 3, 5),
                          test_masks=('train_val', 'train'))
    users, ranked = evaluator.topk(Recorder(SCORES), 'test', test_mask='train')
    assert users.tolist() == [0, 1, 2]
    assert ranked.tolist() == [
        [1, 2, 3, 4, 5],  # user 0's validation item 2 is back in second place
        [3, 2, 1, 0, -1],  # user 1's validation item 3 is ranked first
        [2, 5, 0, 4, 3],  # user 2 has no validation item: unchanged
    ]
    # The first rule is the default; both agree on users without val items.
    default = evaluator.evaluate(Recorder(SCORES), 'test')
    assert default == Evaluator(small_data(), ks=(1, 2, 3, 5)).evaluate(
        Recorder(SCORES), 'test')
    train_only = evaluator.evaluate(Recorder(SCORES), 'test',
                                    test_mask='train')
    # recall@1: user 0 ranks its test item 1 first (1/2), user 1 ranks val
    # item 3 first (0), user 2 ranks test item 2 first (1/2).
    assert train_only['recall@1'] == pytest.approx((0.5 + 0 + 0.5) / 3)
    assert default['recall@1'] == pytest.approx((0.5 + 0 + 0.5) / 3)
    # recall@3: with the validation items back among the candidates, user 0's
    # test item 4 drops from 3rd to 4th place and user 1's test item 0 from
    # 3rd to 4th.
    assert train_only['recall@3'] == pytest.approx((0.5 + 0 + 0.5) / 3)
    assert default['recall@3'] == pytest.approx((1.0 + 1.0 + 0.5) / 3)


@pytest.mark.parametrize('bad', [(), ('train', 'train'), ('all', ), 'val'])
def test_unknown_test_masks_are_rejected(bad):
    with pytest.raises(ValueError, match='test_masks'):
        Evaluator(small_data(), test_masks=bad)


def test_an_unprepared_test_mask_is_an_error():
    with pytest.raises(ValueError, match="'train' was not prepared"):
        Evaluator(small_data()).evaluate(Recorder(SCORES), 'test',
                                         test_mask='train')


def test_test_masks_from_a_comma_separated_string():
    assert Evaluator(small_data(), test_masks='train, train_val').test_masks \
        == ('train', 'train_val')
