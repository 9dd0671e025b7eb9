"""A loss term or score that is not finite stops the run, naming it; loss
terms must be tensors; gradient clipping bounds the step's gradients; the
checkpoint's RNG state round-trips as plain tensors; the run lock."""
import math
import os

import numpy as np
import pytest
import torch
from trainer_factory import make_trainer

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.models import get_model
from pyg_mmrec.train import Trainer, build_source
from pyg_mmrec.train.checkpoint import (
    RunLock,
    load_checkpoint,
    rng_state,
    seed_everything,
    set_rng_state,
)
from pyg_mmrec.train.divergence import TrainingDiverged, finite_or_none
from pyg_mmrec.train.records import write_json


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=150, num_items=90, seed=5)


def trainer(data, model='lightgcn', **kwargs):
    seed_everything(0)
    net = get_model(model)(data, embedding_dim=8)
    kwargs.setdefault('batch_size', 256)
    return make_trainer(net, data, **kwargs)


def poison(net, method, value, after_calls=0):
    r"""Makes :obj:`net.<method>` return :obj:`value` in place of its
    :obj:`'bpr'` term (or its scores) from its :obj:`after_calls`-th call
    on."""
    original = getattr(net, method)
    calls = [0]

    def wrapped(*args, **kwargs):
        out = original(*args, **kwargs)
        calls[0] += 1
        if calls[0] > after_calls:
            if method == 'forward':
                out = dict(out, bpr=value(out['bpr']))
            else:
                out = value(out)
        return out
    setattr(net, method, wrapped)


def test_a_nan_loss_term_stops_the_run_naming_term_epoch_and_batch(
        data, tmp_path):
    t = trainer(data, epochs=5, checkpoint_dir=str(tmp_path))
    n = len(t.source)  # batches per epoch
    poison(t.net, 'forward', lambda x: x * float('nan'), after_calls=n + 2)
    with pytest.raises(TrainingDiverged, match=r"epoch 2: loss term 'bpr' "
                       r"\(nan\) of batch 3 is not finite; lower the "
                       r"learning rate") as info:
        t.fit()
    assert info.value.epoch == 2
    # The weights never took the poisoned step: best.pt is epoch 1's.
    results = load_json(tmp_path / 'results.json')
    assert results['best_epoch'] == 1 and results['epochs_run'] == 1
    assert 'epoch 2' in results['diverged']


def test_infinite_scores_stop_the_evaluation(data):
    t = trainer(data, epochs=3)
    poison(t.net, 'score', lambda s: s.index_fill(0, torch.tensor([0]),
                                                 float('inf')))
    with pytest.raises(TrainingDiverged, match="epoch 1: the model's val "
                       "scores are not finite"):
        t.fit()


def test_a_stage_term_that_is_not_finite_names_the_stage(data):
    seed_everything(0)
    net = get_model('mdmns')(data, embedding_dim=8, denoiser_hidden=16)
    t = Trainer(net, data, source=build_source(net, data, batch_size=256),
                epochs=2, progress=False)
    stage = t.stages[0]
    loss = stage.loss
    stage.loss = lambda batch: {k: v * float('inf')
                                for k, v in loss(batch).items()}
    with pytest.raises(TrainingDiverged,
                       match=f"of stage '{stage.name}'.* of batch 1"):
        t.fit()


def test_loss_terms_must_be_tensors(data):
    t = trainer(data, epochs=1)
    poison(t.net, 'forward', lambda x: 0.0)
    with pytest.raises(TypeError, match="loss term 'bpr' is a float, not a "
                       "tensor"):
        t.fit()


def test_a_metric_that_is_not_finite_is_never_the_best(data):
    t = trainer(data, epochs=2)
    best = {'epoch': 0, 'score': float('-inf'), 'val': {}, 'test': {}}
    evaluate = t.evaluate
    t.evaluate = lambda split, mask=None: dict(evaluate(split, mask),
                                               **{'recall@20': float('nan')})
    assert t._evaluate_epoch(1, {}, best, 0) == 1  # a bad evaluation
    assert best['epoch'] == 0


def test_clipping_bounds_the_gradient_norm_of_every_step(data):
    norms = {}
    for clip in (None, 1e-4):
        t = trainer(data, epochs=1, clip_grad_norm=clip)
        step, seen = t.optimizer.step, []

        def recording_step(*args, _step=step, _seen=seen, **kwargs):
            grads = [p.grad for g in t.optimizer.param_groups
                     for p in g['params'] if p.grad is not None]
            _seen.append(float(torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
            return _step(*args, **kwargs)
        t.optimizer.step = recording_step
        t.fit()
        norms[clip] = seen
    assert min(norms[None]) > 1e-3  # so clipping has something to do
    # clip_grad_norm_ scales by clip / (norm + 1e-6)
    assert all(0.99e-4 < n <= 1e-4 for n in norms[1e-4])


def test_results_json_is_strict(tmp_path):
    path = str(tmp_path / 'r.json')
    write_json({'a': float('nan'), 'b': [1.0, float('-inf')],
                'c': {'d': float('inf'), 'e': 2}}, path)
    text = open(path).read()
    assert 'NaN' not in text and 'Infinity' not in text
    assert load_json(path) == {'a': None, 'b': [1.0, None],
                               'c': {'d': None, 'e': 2}}
    assert finite_or_none((1.0, math.nan)) == [1.0, None]


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    seed_everything(7)
    np.random.standard_normal()  # leaves a cached gaussian
    torch.save({'rng': rng_state()}, tmp_path / 'c.pt')
    expected = (torch.rand(3), np.random.standard_normal(4),
                np.random.rand(2))
    set_rng_state(load_checkpoint(str(tmp_path / 'c.pt'))['rng'])
    got = (torch.rand(3), np.random.standard_normal(4), np.random.rand(2))
    assert torch.equal(expected[0], got[0])
    assert np.array_equal(expected[1], got[1])
    assert np.array_equal(expected[2], got[2])


def test_run_lock_is_exclusive_and_released(tmp_path):
    folder = str(tmp_path / 'run')
    with RunLock(folder):
        assert open(os.path.join(folder, '.lock')).read() == str(os.getpid())
        with pytest.raises(ValueError, match=f'PID {os.getpid()}'):
            RunLock(folder).acquire()
    assert os.listdir(folder) == []


def load_json(path):
    import json
    with open(path) as f:
        return json.load(f, parse_constant=lambda c: pytest.fail(c))


@pytest.mark.parametrize('model', ['vbpr', 'freedom'])
def test_features_of_magnitude_1e37_stop_the_run(data, model):
    huge = data.clone()
    for key in [k for k in huge['item'].keys() if k.startswith('x_')]:
        huge['item'][key] = huge['item'][key] * 1e37
    seed_everything(0)
    net = get_model(model)(huge, embedding_dim=8)
    with pytest.raises(TrainingDiverged, match=r'epoch [12]: loss term'):
        make_trainer(net, huge, epochs=2, batch_size=256).fit()
