import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pyg_mmrec.data import build_hetero_data, make_synthetic
from pyg_mmrec.train import distributed
from pyg_mmrec.train.evaluator import Evaluator
from pyg_mmrec.train.sampled import SampledEvaluator

WORLD_SIZE = 2


def synthetic():
    return make_synthetic(num_users=301, num_items=200, seed=5)


def single_case():
    # Validation holds one user (one case): rank 0's shard is empty.
    user = np.array([0, 0, 0, 1, 1])
    item = np.array([0, 1, 2, 3, 4])
    split = np.array([0, 1, 2, 0, 2])
    return build_hetero_data(user, item, split, num_users=2, num_items=9)


def embeddings(num_users, num_items):
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(num_users, 8, generator=gen),
            torch.randn(num_items, 8, generator=gen))


def run_all():
    r"""The metrics of a fixed deterministic scorer: full ranking and
    sampled, on both splits, on two datasets."""
    out = {}
    for name, data, kwargs in [('synthetic', synthetic(), {}),
                               ('single', single_case(),
                                dict(num_negatives=5))]:
        user_emb, item_emb = embeddings(data['user'].num_nodes,
                                        data['item'].num_nodes)
        full = Evaluator(data, ks=(1, 5, 20), batch_size=37,
                         test_masks=('train_val', 'train'))
        sampled = SampledEvaluator(data, ks=(1, 5, 20), batch_size=29,
                                   metrics=('hit', 'ndcg', 'recall'),
                                   **kwargs)
        for split in ('val', 'test'):
            out[f'{name}/full/{split}'] = full.evaluate_embeddings(
                user_emb, item_emb, split)
            out[f'{name}/sampled/{split}'] = sampled.evaluate_embeddings(
                user_emb, item_emb, split)
        out[f'{name}/full/test:train'] = full.evaluate(
            lambda u: user_emb[u] @ item_emb.t(), 'test', 'train')
    return out


def worker(rank, init_method, out_dir):
    dist.init_process_group('gloo', init_method=init_method, rank=rank,
                            world_size=WORLD_SIZE)
    try:
        torch.set_num_threads(1)
        info = dict(rank=distributed.rank(),
                    world_size=distributed.world_size(),
                    initialized=distributed.is_initialized(),
                    main=distributed.is_main_process(),
                    shard=[distributed.shard(301).start,
                           distributed.shard(301).stop],
                    summed=distributed.all_reduce_sum(
                        torch.tensor([rank + 1.0])).item())
        distributed.barrier()
        # Which users (full) and cases (sampled) this process scores:
        data = synthetic()
        user_emb, item_emb = embeddings(301, 200)
        scored = {'full': [], 'sampled': []}

        def full_fn(users):
            scored['full'] += users.tolist()
            return user_emb[users] @ item_emb.t()

        def sampled_fn(users, items):
            scored['sampled'] += items[:, 0].tolist()  # held-out items
            return torch.einsum('bd,bcd->bc', user_emb[users], item_emb[items])

        Evaluator(data, batch_size=37).evaluate(full_fn, 'test')
        SampledEvaluator(data, batch_size=29).evaluate(sampled_fn, 'test')
        result = dict(info=info, metrics=run_all(), scored=scored)
        with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one(tmp_path):
    init_method = 'file://' + str(tmp_path / 'init')
    mp.spawn(worker, args=(init_method, str(tmp_path)), nprocs=WORLD_SIZE,
             join=True)
    expected = run_all()
    data = synthetic()
    scored = []
    for rank in range(WORLD_SIZE):
        with open(tmp_path / f'rank{rank}.json') as f:
            scored.append(json.load(f)['scored'])
    # Each process scored its contiguous half of the users / cases:
    users = Evaluator(data).users('test').tolist()
    half = len(users) // 2
    assert scored[0]['full'] == users[:half]
    assert scored[1]['full'] == users[half:]
    cases = SampledEvaluator(data).candidates('test')[1][:, 0].tolist()
    half = len(cases) // 2
    assert scored[0]['sampled'] == cases[:half]
    assert scored[1]['sampled'] == cases[half:]
    for rank in range(WORLD_SIZE):
        with open(tmp_path / f'rank{rank}.json') as f:
            result = json.load(f)
        info = result['info']
        assert info['rank'] == rank and info['world_size'] == WORLD_SIZE
        assert info['initialized'] and info['main'] == (rank == 0)
        assert info['shard'] == [[0, 150], [150, 301]][rank]
        assert info['summed'] == 3.0
        metrics = result['metrics']
        assert metrics.keys() == expected.keys()
        for key, values in expected.items():
            assert metrics[key].keys() == values.keys()
            for name, value in values.items():
                assert metrics[key][name] == pytest.approx(value, abs=1e-6), \
                    (rank, key, name)
    # The datasets are not degenerate: some metrics are neither 0 nor 1.
    assert 0 < expected['synthetic/sampled/test']['hit@5'] < 1
    assert 0 < expected['synthetic/full/test']['recall@20'] < 1


def test_helpers_without_process_group():
    assert not distributed.is_initialized()
    assert distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.is_main_process()
    x = torch.tensor([1.0, 2.0])
    assert distributed.all_reduce_sum(x) is x
    assert x.tolist() == [1.0, 2.0]
    assert distributed.barrier() is None
    assert distributed.shard(10) == slice(0, 10)


def test_shard():
    for n in (0, 1, 7, 10):
        for w in (1, 2, 3, 4):
            parts = [distributed.shard(n, r, w) for r in range(w)]
            # Contiguous, in order, covering range(n), sizes within one.
            assert parts[0].start == 0 and parts[-1].stop == n
            assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
            sizes = [p.stop - p.start for p in parts]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match='rank'):
        distributed.shard(5, 2, 2)
    with pytest.raises(ValueError, match='n must be'):
        distributed.shard(-1, 0, 1)


# ---------------------------------------------------------------------------
# Data-parallel training: 2 processes against 1.

TRAIN = dict(epochs=4, patience=50, lr=5e-3, eval_batch_size=64)


def fit(data, batch_size, checkpoint_dir=None, resume=False, callbacks=None,
        **kwargs):
    from trainer_factory import make_trainer

    from pyg_mmrec.models import get_model
    from pyg_mmrec.train.checkpoint import seed_everything
    seed_everything(0)
    model = distributed.wrap_model(get_model('lightgcn')(data))
    return make_trainer(model, data, batch_size=batch_size,
                        checkpoint_dir=checkpoint_dir, resume=resume,
                        callbacks=callbacks, **{**TRAIN, **kwargs}).fit()


def train_worker(rank, init_method, out_dir):
    from trainer_helpers import Interrupt
    dist.init_process_group('gloo', init_method=init_method, rank=rank,
                            world_size=WORLD_SIZE)
    try:
        torch.set_num_threads(1)
        data = synthetic()
        out = {'full': fit(data, 64, os.path.join(out_dir, 'full'))}
        # Interrupted after epoch 2 in both processes, then resumed.
        ckpt = os.path.join(out_dir, 'resumed')
        try:
            fit(data, 64, ckpt, callbacks=[Interrupt(after_epoch=2)])
        except KeyboardInterrupt:
            pass
        out['resumed'] = fit(data, 64, ckpt, resume=True)
        out['neighbor'] = fit(data, 64, os.path.join(out_dir, f'nb{rank}'),
                              sampler='neighbor', num_neighbors='5,5')
        with open(os.path.join(out_dir, f'train{rank}.json'), 'w') as f:
            json.dump({k: {'test': v['test'], 'history': [
                {'epoch': r['epoch'], 'losses': r['losses']}
                for r in v['history']]} for k, v in out.items()}, f)
    finally:
        dist.destroy_process_group()


def test_data_parallel_training_matches_one_process(tmp_path):
    r"""2 processes at batch size B train as 1 process at 2B: the same
    triples in every step (up to the order of the floating-point sums of
    the averaged gradients), so the same metrics; resuming an interrupted
    2-process run gives the uninterrupted one's; mini-batch DDP samples
    other subgraphs than 1 process and matches within noise."""
    mp.spawn(train_worker, args=('file://' + str(tmp_path / 'init'),
                                 str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    runs = []
    for rank in range(WORLD_SIZE):
        with open(tmp_path / f'train{rank}.json') as f:
            runs.append(json.load(f))
    data = synthetic()
    one = fit(data, 128)
    for run in runs:  # every process returns the same (all-reduced) metrics
        for name, value in one['test'].items():
            assert run['full']['test'][name] == pytest.approx(value, abs=1e-4)
        assert run['resumed']['test'] == run['full']['test']
    # The loss each process logs is that of its half of the batches.
    mean_loss = [sum(r['full']['history'][e]['losses']['loss']
                     for r in runs) / 2 for e in range(TRAIN['epochs'])]
    assert mean_loss == pytest.approx(
        [r['losses']['loss'] for r in one['history']], rel=1e-3)
    # Only rank 0 writes: checkpoints and results in the shared folder, no
    # folder of rank 1's own.
    assert {'last.pt', 'best.pt', 'results.json'} <= set(
        os.listdir(tmp_path / 'full'))
    assert (tmp_path / 'nb0' / 'results.json').exists()
    assert not (tmp_path / 'nb1').exists()
    neighbor = fit(data, 128, sampler='neighbor', num_neighbors='5,5')
    for key in ('recall@20', 'ndcg@20'):
        assert runs[0]['neighbor']['test'][key] == pytest.approx(
            neighbor['test'][key], abs=0.05)
        assert runs[0]['neighbor']['test'][key] == pytest.approx(
            one['test'][key], abs=0.05)


def test_helpers_are_no_ops_in_one_process_and_unshardable_stages_refused(
        monkeypatch):
    from pyg_mmrec.loader import RowBlockSource
    from pyg_mmrec.models import Stage, get_model
    from pyg_mmrec.train.epoch import shard_stage
    data = synthetic()
    model = get_model('lightgcn')(data)
    assert distributed.wrap_model(model) is model
    assert distributed.init_from_env('cpu') == 'cpu'  # no torchrun: no-op
    param = torch.nn.Parameter(torch.ones(3))
    param.grad = torch.full((3,), 2.0)
    distributed.average_gradients([param])
    distributed.broadcast_buffers(model)
    assert torch.equal(param.grad, torch.full((3,), 2.0))
    linear = torch.nn.Linear(2, 2)
    stage = Stage('rows', [linear], lambda ids: {}, RowBlockSource(10, 4))
    assert shard_stage(stage) is stage
    monkeypatch.setattr(distributed, 'world_size', lambda: 2)
    monkeypatch.setattr(distributed, 'rank', lambda: 1)
    sharded = shard_stage(stage)
    assert (sharded.source.rank, sharded.source.world_size) == (1, 2)
    assert sharded.modules == [linear] and stage.source.world_size == 1
    with pytest.raises(ValueError, match="stage 'lists'.*with_shard"):
        shard_stage(Stage('lists', [linear], lambda ids: {}, [[0, 1]]))
