import json
import os

import pytest
import torch
from trainer_factory import make_trainer as build_trainer
from trainer_helpers import Interrupt, strip_times

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.models import get_model
from pyg_mmrec.train.checkpoint import atomic_save, seed_everything
from pyg_mmrec.train.optim import build_optimizer


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=200, num_items=120, seed=3)


def make_trainer(data, model='lightgcn', seed=0, model_kwargs=None, **kwargs):
    seed_everything(seed)
    net = get_model(model)(data, **(model_kwargs or {}))
    kwargs.setdefault('batch_size', 256)
    return build_trainer(net, data, seed=seed, **kwargs)


@pytest.mark.parametrize('model', ['lightgcn', 'freedom', 'fmcns', 'mdmns',
                                   'mcln', 'rearm', 'genrec'])
def test_resume_after_interrupt_matches_uninterrupted_run(data, tmp_path,
                                                          model):
    full = make_trainer(data, model, epochs=6, patience=50,
                        checkpoint_dir=str(tmp_path / 'a')).fit()

    interrupted = make_trainer(data, model, epochs=6, patience=50,
                               checkpoint_dir=str(tmp_path / 'b'),
                               callbacks=[Interrupt(after_epoch=3)])
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    state = torch.load(tmp_path / 'b' / 'last.pt', weights_only=True)
    assert state['epoch'] == 3

    resumed = make_trainer(data, model, epochs=6, patience=50, resume=True,
                           checkpoint_dir=str(tmp_path / 'b')).fit()
    assert resumed['epochs_run'] == full['epochs_run'] == 6
    assert resumed['best_epoch'] == full['best_epoch']
    assert resumed['val'] == full['val']
    assert resumed['test'] == full['test']
    assert strip_times(resumed['history']) == strip_times(full['history'])


def test_same_seed_same_results_other_seed_differs(data):
    a = make_trainer(data, seed=1, epochs=3, patience=50).fit()
    b = make_trainer(data, seed=1, epochs=3, patience=50).fit()
    c = make_trainer(data, seed=2, epochs=3, patience=50).fit()
    assert strip_times(a['history']) == strip_times(b['history'])
    assert strip_times(a['history']) != strip_times(c['history'])


def test_early_stopping_after_patience_evaluations_without_improvement(data):
    # With a zero learning rate the model never improves after epoch 1.
    res = make_trainer(data, lr=0.0, epochs=100, patience=3).fit()
    assert res['best_epoch'] == 1
    assert res['epochs_run'] == 4
    assert res['stopped_early']
    assert ([r.get('best', False) for r in res['history']] ==
            [True] + [False] * 3)


def test_test_metrics_are_those_of_the_best_validation_epoch(data):
    res = make_trainer(data, epochs=8, patience=50).fit()
    best = [r for r in res['history'] if r['epoch'] == res['best_epoch']][0]
    assert best['val'] == res['val'] and best['test'] == res['test']
    assert res['val']['recall@20'] == max(r['val']['recall@20']
                                          for r in res['history'])
    assert res['selection'] == 'val'


def test_select_on_test_is_labelled(data):
    res = make_trainer(data, epochs=3, patience=50, select_on='test').fit()
    assert 'paper-reproduction' in res['selection']
    assert all('test' in r for r in res['history'])
    assert res['test']['recall@20'] == max(r['test']['recall@20']
                                           for r in res['history'])


def test_results_json_and_best_checkpoint_are_written(data, tmp_path):
    res = make_trainer(data, epochs=2, patience=50,
                       checkpoint_dir=str(tmp_path),
                       config={'note': 'x'}).fit()
    saved = json.loads((tmp_path / 'results.json').read_text())
    assert saved['test'] == res['test'] and saved['config'] == {'note': 'x'}
    assert saved['time_per_epoch'] > 0 and saved['peak_memory_mb'] > 0
    assert len(saved['history']) == 2
    assert all(set(r['losses']) == {'bpr', 'reg', 'loss'}
               for r in saved['history'])
    best = torch.load(tmp_path / 'best.pt', weights_only=True)
    assert 'embedding.weight' in best


def test_resume_with_another_config_is_refused(data, tmp_path):
    make_trainer(data, epochs=1, checkpoint_dir=str(tmp_path),
                 config={'lr': 1e-3}).fit()
    with pytest.raises(ValueError, match='another configuration.*lr'):
        make_trainer(data, epochs=2, checkpoint_dir=str(tmp_path), resume=True,
                     config={'lr': 5e-4}).fit()


def test_untrainable_model_is_evaluated_once(data):
    res = make_trainer(data, 'pop', epochs=10).fit()
    assert res['epochs_run'] == 0 and res['best_epoch'] == 0
    assert 0 < res['test']['recall@20'] < 1


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path,
                                                           monkeypatch):
    path = str(tmp_path / 'ckpt.pt')
    atomic_save({'a': 1}, path)

    def broken_save(obj, f):
        f.write(b'partial')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        atomic_save({'a': 2}, path)
    monkeypatch.undo()
    assert torch.load(path) == {'a': 1}
    assert os.listdir(tmp_path) == ['ckpt.pt']


@pytest.mark.parametrize('kwargs,match', [
    ({'select_on': 'train'}, 'select_on'),
    ({'batch_size': 0}, 'batch_size'),
    ({'resume': True}, 'checkpoint_dir'),  # at fit
    ({'metric': 'recall@7'}, 'recall@7'),
])
def test_bad_trainer_arguments(data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_trainer(data, **kwargs).fit()


def test_memory_allocator_names_the_allocator_and_its_settings(monkeypatch):
    from pyg_mmrec.train.records import memory_allocator
    for name in ('LD_PRELOAD', 'MALLOC_CONF', 'GLIBC_TUNABLES'):
        monkeypatch.delenv(name, raising=False)
    assert memory_allocator() == 'glibc'
    monkeypatch.setenv('GLIBC_TUNABLES', 'glibc.malloc.mmap_threshold=4194304')
    assert memory_allocator() == 'glibc glibc.malloc.mmap_threshold=4194304'
    monkeypatch.setenv('LD_PRELOAD', '/usr/lib/libjemalloc.so.2')
    assert memory_allocator() == 'jemalloc'
    monkeypatch.setenv('MALLOC_CONF', 'dirty_decay_ms:-1')
    assert memory_allocator() == 'jemalloc dirty_decay_ms:-1'


def test_several_test_masks_are_recorded_and_the_first_is_reported(data):
    res = make_trainer(data, epochs=2, patience=5,
                       test_masks=('train', 'train_val')).fit()
    assert res['test_mask'] == 'train'
    by_mask = res['test_by_mask']
    assert set(by_mask) == {'train', 'train_val'}
    assert res['test'] == by_mask['train']
    # Masking fewer items can only lose hits: validation items take slots.
    assert by_mask['train']['recall@20'] <= by_mask['train_val']['recall@20']
    assert by_mask['train'] != by_mask['train_val']
    for record in res['history']:
        if 'test' in record:
            assert record['test_by_mask']['train'] == record['test']
    single = make_trainer(data, epochs=2, patience=5).fit()
    assert single['test_mask'] == 'train_val' and 'test_by_mask' not in single
    assert single['test'] == by_mask['train_val']


@pytest.mark.parametrize('name', ['adam', 'adamw'])
def test_trainer_optimisers_are_fused_and_step_as_the_default_ones(data, name):
    """The trainer's optimisers take PyTorch's fused kernel on CPU, whose
    steps match the default (for-loop) implementation's to rounding; an
    implementation the caller names is kept."""
    trainer = make_trainer(data, optimizer=name)
    assert trainer.optimizer.param_groups[0]['fused']
    torch.manual_seed(0)
    start = [torch.randn(50, 7), torch.randn(3)]
    params = [[p.clone().requires_grad_() for p in start] for _ in range(2)]
    fused = build_optimizer(name, params[0], lr=0.1, weight_decay=0.01)
    plain = build_optimizer(name, params[1], lr=0.1, weight_decay=0.01,
                            foreach=False)
    assert (fused.param_groups[0]['fused'] and
            not plain.param_groups[0]['fused'])
    for _ in range(5):
        grads = [torch.randn_like(p) for p in start]
        for opt, group in ((fused, params[0]), (plain, params[1])):
            for p, g in zip(group, grads):
                p.grad = g.clone()
            opt.step()
    for a, b, s in zip(*params, start):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        assert (a - s).abs().min() > 0  # every entry moved
