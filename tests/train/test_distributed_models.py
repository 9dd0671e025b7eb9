"""Every registered model under two gloo processes, and the stages of a
model (trained outside the DistributedDataParallel wrapper) data-parallel
exactly where the algorithm allows."""
import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.loader import RowBlockSource
from pyg_mmrec.models import MODELS, LightGCN, Stage
from pyg_mmrec.train import distributed

WORLD_SIZE = 2
TRAIN = dict(epochs=2, patience=50, lr=5e-3, eval_batch_size=64)


def synthetic():
    # 668 training pairs and 128 users: the last round of batches (28
    # pairs) and of row blocks split into equal halves, so that 2 processes
    # average what 1 process means.
    return make_synthetic(num_users=128, num_items=100, seed=4)


class LightGCNWithRowStage(LightGCN):
    r"""LightGCN plus a deterministic stage: a linear map of users' dense
    training rows to themselves, trained by MSE over row blocks (the shape
    of a denoiser stage without its noise)."""
    def __init__(self, data, block: int):
        super().__init__(data)
        self.block = block
        self.row_map = torch.nn.Linear(self.num_items, self.num_items)
        dense = torch.zeros(self.num_users, self.num_items)
        dense[tuple(train_graph(data).edge_index)] = 1.0
        self.register_buffer('rows', dense, persistent=False)

    def row_loss(self, users):
        rows = self.rows[users]
        return {'mse': (self.row_map(rows) - rows).pow(2).mean()}

    def stages(self):
        return (Stage('rows', [self.row_map], self.row_loss,
                      RowBlockSource(self.num_users, self.block),
                      optimizer_kwargs={'lr': 1e-2}),)


def mdmns_without_noise(data):
    # MDMNS's recommender where it is data-parallel exactly: its generated
    # graphs fixed (the diffusion stage skipped: the graphs come from the
    # initial denoisers, the same in every process) and no in-batch
    # contrast (ssl_weight 0: InfoNCE over a batch's users is not the mean
    # of the two halves' InfoNCE).
    model = MODELS['mdmns'](data, ssl_weight=0.0)
    model.stages = lambda: ()
    return model


def fit(model, data, batch_size, **kwargs):
    from trainer_factory import make_trainer

    return make_trainer(distributed.wrap_model(model), data,
                        batch_size=batch_size, **{**TRAIN, **kwargs}).fit()


def fingerprint(model):
    # Per state entry: the sum and the sum of squares, in float64.
    net = getattr(model, 'module', model)
    return {name: [v.double().sum().item(), v.double().pow(2).sum().item()]
            for name, v in net.state_dict().items() if v.is_floating_point()}


def models_worker(rank, init_method, out_dir):
    from trainer_helpers import Interrupt

    from pyg_mmrec.train.checkpoint import seed_everything
    dist.init_process_group('gloo', init_method=init_method, rank=rank,
                            world_size=WORLD_SIZE)
    try:
        torch.set_num_threads(1)
        data = synthetic()
        out = {}
        for name in sorted(MODELS):
            seed_everything(0)
            model = MODELS[name](data)
            result = fit(model, data, 32, epochs=1)
            out[name] = dict(test=result['test'], state=fingerprint(model))
        seed_everything(0)
        model = LightGCNWithRowStage(data, block=8)
        result = fit(model, data, 32)
        out['row_stage'] = dict(test=result['test'], state=fingerprint(model),
                                losses=[r['losses'] for r in
                                        result['history']])
        # MDMNS with its diffusion stage, interrupted after epoch 1 and
        # resumed, against the uninterrupted run:
        runs = {}
        for name, kwargs in (('uninterrupted', {}),
                             ('interrupted', dict(callbacks=[
                                 Interrupt(after_epoch=1)])),
                             ('resumed', dict(resume=True))):
            seed_everything(0)
            model = MODELS['mdmns'](data)
            folder = 'mdmns_full' if name == 'uninterrupted' else 'mdmns'
            try:
                result = fit(model, data, 32, checkpoint_dir=os.path.join(
                    out_dir, folder), **kwargs)
            except KeyboardInterrupt:
                continue
            runs[name] = dict(test=result['test'], state=fingerprint(model))
        out['mdmns_resume'] = runs
        seed_everything(0)
        model = mdmns_without_noise(data)
        result = fit(model, data, 32)
        out['mdmns_exact'] = dict(test=result['test'],
                                  state=fingerprint(model))
        with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(out, f)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope='module')
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp('ddp_models')
    mp.spawn(models_worker, args=('file://' + str(out / 'init'), str(out)),
             nprocs=WORLD_SIZE, join=True)
    runs = []
    for rank in range(WORLD_SIZE):
        with open(out / f'rank{rank}.json') as f:
            runs.append(json.load(f))
    return runs


def assert_one_process_matches(two_processes, name, build):
    r"""Trains :obj:`build(data)` in this process at batch 64 and checks
    that each of the two processes' run :obj:`name` (batch 32 each) ended
    with its parameters and metrics, up to the order of the floating-point
    sums of the averaged gradients; returns this process's results."""
    from pyg_mmrec.train.checkpoint import seed_everything
    data = synthetic()
    seed_everything(0)
    model = build(data)
    one = fit(model, data, 64)
    state = fingerprint(model)
    for run in two_processes:
        got = run[name]
        for key, value in state.items():
            assert got['state'][key] == pytest.approx(value, rel=1e-4,
                                                      abs=1e-5), key
        for metric, value in one['test'].items():
            assert got['test'][metric] == pytest.approx(value, abs=1e-4)
    return one


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(MODELS))
def test_every_model_trains_in_two_processes(two_processes, name):
    # Both processes end with the same parameters and buffers (the
    # recommender's gradients and the stages' are averaged, what a stage
    # draws is rank 0's) and report the same all-reduced metrics.
    first, second = (run[name] for run in two_processes)
    assert first['state'].keys() == second['state'].keys()
    for key, value in first['state'].items():
        assert value == pytest.approx(second['state'][key], rel=1e-5,
                                      abs=1e-6), key
    assert first['test'] == second['test']
    assert all(v == v for v in first['test'].values())  # finite, not NaN


@pytest.mark.slow
def test_a_stage_in_two_processes_trains_as_one_process_at_twice_the_block(
        two_processes):
    # Blocks of 8 rows in each of 2 processes = blocks of 16 in one: the
    # stage's parameters, the recommender's and the metrics agree up to the
    # order of the floating-point sums of the averaged gradients.
    one = assert_one_process_matches(
        two_processes, 'row_stage',
        lambda data: LightGCNWithRowStage(data, block=16))
    # Each process logs the mean of its half of the blocks:
    for epoch, record in enumerate(one['history']):
        mean = sum(run['row_stage']['losses'][epoch]['rows/mse']
                   for run in two_processes) / 2
        assert mean == pytest.approx(record['losses']['rows/mse'], rel=1e-4)


@pytest.mark.slow
def test_mdmns_recommender_in_two_processes_trains_as_one_process(
        two_processes):
    # BPR and the regulariser over the generated and training graphs: 2
    # processes at batch 32 = 1 process at batch 64. What is not exact
    # (the diffusion stage's noise, drawn per process; the in-batch
    # contrast) is left out here and agrees within noise (the test above).
    assert_one_process_matches(two_processes, 'mdmns_exact',
                               mdmns_without_noise)


@pytest.mark.slow
def test_mdmns_with_its_stage_resumes_exactly_in_two_processes(
        two_processes):
    # Checkpoints hold the stage's optimiser state and the generated
    # graphs; each process's stage noise is seeded by (seed, epoch, stage,
    # rank), so the resumed epoch 2 draws what the uninterrupted one drew.
    for run in two_processes:
        runs = run['mdmns_resume']
        assert runs['resumed']['test'] == runs['uninterrupted']['test']
        assert runs['resumed']['state'] == runs['uninterrupted']['state']
