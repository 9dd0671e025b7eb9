"""Epoch selection, early stopping, ``eval_every``, resume and ``best.pt``
under a scripted evaluation.

A tiny LightGCN really trains, but the evaluator's ``evaluate`` is replaced on
the trainer's instance by a script of per-epoch validation / test metric
dicts, so the expected epochs are known by hand. In every script the best
validation epoch is neither the best test epoch nor the last epoch, and no
two evaluated epochs tie.

Bugs these tests catch (each checked by injecting it alone into a copy of
``trainer.py``):

(a) the epoch chosen on the test metric while ``selection`` says ``'val'``;
(b) the last epoch's test metrics reported instead of the best epoch's;
(c) ``eval_every`` ignored (evaluation every epoch);
(d) resume forgetting the early-stopping counter (``bad_evals`` reset to 0);
(e) ``best.pt`` written every epoch instead of at the best one.
"""
import pytest
import torch
from trainer_factory import make_trainer as build_trainer
from trainer_helpers import Interrupt, strip_times

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.models import get_model
from pyg_mmrec.train.checkpoint import seed_everything
from pyg_mmrec.train.trainer import SELECT_ON_TEST_LABEL


@pytest.fixture(scope='module')
def data():
    return make_synthetic(num_users=60, num_items=40, seed=0)


def metrics(recall, epoch, split):
    """A scripted metric dict, distinct per epoch and split."""
    offset = 0.0 if split == 'val' else 0.5
    return {'recall@20': recall, 'ndcg@20': recall / 2 + epoch * 1e-3,
            'hit@10': offset + epoch * 1e-2}


class Script:
    """Scripted evaluation: ``val[e - 1]`` / ``test[e - 1]`` is the
    Recall@20 of epoch ``e``. Records every call as ``(split, epoch)``."""
    def __init__(self, val, test):
        self.scores = {
            split: {e: metrics(r, e, split) for e, r in enumerate(seq, 1)}
            for split, seq in (('val', val), ('test', test))}
        self.calls = []

    def at(self, split, epoch):
        return self.scores[split][epoch]

    def epochs(self, split):
        return [e for s, e in self.calls if s == split]

    def install(self, trainer):
        current = {'epoch': None}
        train_epoch = trainer.train_epoch

        def tracked(epoch, *args, **kwargs):
            current['epoch'] = epoch
            return train_epoch(epoch, *args, **kwargs)

        def evaluate(score_fn=None, split='val', *args, **kwargs):
            self.calls.append((split, current['epoch']))
            return dict(self.scores[split][current['epoch']])

        trainer.train_epoch = tracked
        trainer.evaluator.evaluate = evaluate
        return trainer


def make_trainer(data, script, **kwargs):
    seed_everything(0)
    net = get_model('lightgcn')(data)
    kwargs.setdefault('batch_size', 4096)
    return script.install(build_trainer(net, data, **kwargs))


# Best validation epoch 3, best test epoch 5, last epoch 8.
VAL = [0.10, 0.20, 0.35, 0.30, 0.25, 0.32, 0.28, 0.31]
TEST = [0.05, 0.15, 0.20, 0.22, 0.40, 0.18, 0.21, 0.19]


def check_history(history, script, evaluated):
    assert [r['epoch'] for r in history] == list(range(1, len(history) + 1))
    for r in history:
        assert ('val' in r) == (r['epoch'] in evaluated), r['epoch']
        for split in ('val', 'test'):
            if split in r:
                assert r[split] == script.at(split, r['epoch'])


def test_test_metrics_are_those_of_the_best_validation_epoch(data):
    """Selection on validation: best epoch 3, its val and test dicts."""
    script = Script(VAL, TEST)
    res = make_trainer(data, script, epochs=8, patience=50).fit()
    assert res['selection'] == 'val'
    assert res['best_epoch'] == 3
    assert res['val'] == script.at('val', 3)
    assert res['test'] == script.at('test', 3)
    assert res['epochs_run'] == 8 and not res['stopped_early']
    check_history(res['history'], script, evaluated=range(1, 9))
    assert [r.get('best', False) for r in res['history']] == \
        [True, True, True] + [False] * 5


def test_select_on_test_picks_the_best_test_epoch_and_says_so(data):
    script = Script(VAL, TEST)
    res = make_trainer(data, script, epochs=8, patience=50,
                       select_on='test').fit()
    assert res['selection'] == SELECT_ON_TEST_LABEL
    assert res['selection'] != 'val' and 'test' in res['selection']
    assert res['best_epoch'] == 5
    assert res['test'] == script.at('test', 5)
    assert res['val'] == script.at('val', 5)
    check_history(res['history'], script, evaluated=range(1, 9))
    assert all('test' in r for r in res['history'])


def test_early_stopping_after_patience_evaluations_without_improvement(data):
    # Improvements at 1, 2, 3, 5; epochs 6, 7, 8 are the 3 (= patience)
    # evaluations without improvement, so the run stops before epoch 9 and
    # never sees the better epoch 10.
    val = [0.10, 0.20, 0.30, 0.25, 0.35, 0.30, 0.32, 0.34, 0.33, 0.50,
           0.51, 0.52]
    test = [0.01 * e for e in range(12, 0, -1)]
    script = Script(val, test)
    res = make_trainer(data, script, epochs=12, patience=3).fit()
    assert res['stopped_early']
    assert res['epochs_run'] == 8
    assert [r['epoch'] for r in res['history']] == list(range(1, 9))
    assert script.epochs('val') == list(range(1, 9))
    assert res['best_epoch'] == 5
    assert res['val'] == script.at('val', 5)
    assert res['test'] == script.at('test', 5)


def test_eval_every_counts_patience_in_evaluations(data):
    # eval_every=3: evaluations at 3, 6 (best), 9, 12; with patience 2 the
    # run stops after epoch 12 (after 6 epochs, 2 evaluations, without
    # improvement). Non-evaluated epochs hold traps that would win.
    val = [0.90, 0.91, 0.20, 0.92, 0.93, 0.40, 0.94, 0.95, 0.30, 0.96, 0.97,
           0.35, 0.98, 0.99, 0.60]
    test = [0.05, 0.06, 0.10, 0.07, 0.08, 0.15, 0.09, 0.11, 0.30, 0.12, 0.13,
            0.20, 0.14, 0.16, 0.17]
    script = Script(val, test)
    res = make_trainer(data, script, epochs=15, patience=2,
                       eval_every=3).fit()
    assert script.epochs('val') == [3, 6, 9, 12]
    assert set(script.epochs('test')) <= {3, 6, 9, 12}
    check_history(res['history'], script, evaluated=(3, 6, 9, 12))
    assert res['stopped_early'] and res['epochs_run'] == 12
    assert res['best_epoch'] == 6 and res['best_epoch'] % 3 == 0
    assert res['val'] == script.at('val', 6)
    assert res['test'] == script.at('test', 6)


def test_eval_every_also_evaluates_the_last_epoch(data):
    # Evaluations at 3, 6, 9 and the final epoch 10 only; best test at 9.
    val = [0.90, 0.91, 0.20, 0.92, 0.93, 0.40, 0.94, 0.95, 0.30, 0.35]
    test = [0.90, 0.91, 0.10, 0.92, 0.93, 0.15, 0.94, 0.95, 0.30, 0.20]
    script = Script(val, test)
    res = make_trainer(data, script, epochs=10, patience=50, eval_every=3,
                       select_on='test').fit()
    assert script.epochs('val') == [3, 6, 9, 10]
    assert script.epochs('test') == [3, 6, 9, 10]
    check_history(res['history'], script, evaluated=(3, 6, 9, 10))
    assert res['epochs_run'] == 10 and not res['stopped_early']
    assert res['best_epoch'] == 9
    assert res['test'] == script.at('test', 9)


def test_resume_inside_a_patience_window_stops_like_an_uninterrupted_run(
        data, tmp_path):
    # Best at 4, then 5..8 are 4 (= patience) bad evaluations: stop before 9.
    # The interruption after epoch 6 falls 2 bad evaluations into the window;
    # a resume that reset the counter would reach the better epoch 10.
    val = [0.10, 0.20, 0.30, 0.40, 0.35, 0.36, 0.37, 0.38, 0.39, 0.45,
           0.46, 0.47, 0.48, 0.49, 0.50]
    test = [0.30 - 0.01 * e for e in range(15)]
    kwargs = dict(epochs=15, patience=4)

    full = make_trainer(data, Script(val, test), **kwargs,
                        checkpoint_dir=str(tmp_path / 'a')).fit()
    assert full['stopped_early'] and full['epochs_run'] == 8
    assert full['best_epoch'] == 4

    interrupted = make_trainer(data, Script(val, test), **kwargs,
                               checkpoint_dir=str(tmp_path / 'b'),
                               callbacks=[Interrupt(after_epoch=6)])
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    state = torch.load(tmp_path / 'b' / 'last.pt', weights_only=True)
    assert state['epoch'] == 6

    script = Script(val, test)
    resumed = make_trainer(data, script, **kwargs, resume=True,
                           checkpoint_dir=str(tmp_path / 'b')).fit()
    assert script.epochs('val') == [7, 8]
    for key in ('stopped_early', 'epochs_run', 'best_epoch', 'val', 'test'):
        assert resumed[key] == full[key], key
    assert strip_times(resumed['history']) == strip_times(full['history'])


def test_best_checkpoint_holds_the_best_validation_epoch_weights(data,
                                                                 tmp_path):
    snapshots = {}

    def snapshot(trainer, record):
        snapshots[record['epoch']] = {
            k: v.detach().clone()
            for k, v in trainer.model.state_dict().items()}

    script = Script(VAL, TEST)
    res = make_trainer(data, script, epochs=8, patience=50,
                       checkpoint_dir=str(tmp_path),
                       callbacks=[snapshot]).fit()
    assert res['best_epoch'] == 3
    best = torch.load(tmp_path / 'best.pt', weights_only=True)

    def same(a, b):
        return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)

    assert not same(snapshots[3], snapshots[8])  # training moved the weights
    assert same(best, snapshots[3])
