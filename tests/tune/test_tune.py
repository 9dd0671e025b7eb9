import importlib.util
import json
import multiprocessing
import os
import os.path as osp
import subprocess
import sys

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from tune_helpers import FIXED, lightgcn_space, small, states

from pyg_mmrec.cli import main
from pyg_mmrec.config import load_config, resolve_config
from pyg_mmrec.experiment import build_trainer
from pyg_mmrec.models import MODELS
from pyg_mmrec.train import Trainer
from pyg_mmrec.tune import SearchSpace, load_space, run_study
from pyg_mmrec.tune.report import load_study, write_study_report
from pyg_mmrec.tune.study import fail_interrupted_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize('name', [n for n, c in MODELS.items()
                                  if c.trainable])
def test_every_trainable_model_ships_a_space_whose_trials_resolve(name):
    space = load_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    for _ in range(3):
        settings = space.suggest(study.ask())
        sections = resolve_config(name, settings)
        routed = {k: v for values in sections.values()
                  for k, v in values.items()}
        assert all(routed[k] == v for k, v in settings.items())


def extremes(spec):
    return spec if isinstance(spec, list) else [spec['low'], spec['high']]


@pytest.mark.parametrize('name', [n for n, c in MODELS.items()
                                  if c.trainable])
def test_every_shipped_space_bound_is_accepted_by_the_model(name):
    # The space's file checks names and types; the model checks values
    # (REARM refuses self_dropout 1.0 unless faithful): each bound and
    # choice, the others at the defaults, must build the run.
    space, data = load_space(name), small()
    for key, spec in space.params.items():
        for value in extremes(spec):
            settings = {**space.fixed, key: value}
            try:
                build_trainer(name, data, settings, progress=False)
            except ValueError as e:
                pytest.fail(f"{name}: {key}={value!r} is refused: {e}")


def test_rejected_settings_fail_their_trial_and_do_not_count(tmp_path):
    # lr -1 passes the space's type check but Adam refuses it.
    space = SearchSpace('lightgcn', {'lr': [-1.0, 1e-2]}, FIXED)
    folder = str(tmp_path / 'study')
    summary = run_study(space, small(), 'small', folder, trials=2,
                        pruner='none', final_seeds=0, seed=2)
    study, _ = load_study(folder)
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    failed = [t for t in study.get_trials() if t.state == TrialState.FAIL]
    assert summary['complete'] == 2 and len(done) == 2
    assert all(t.params['lr'] == 1e-2 for t in done)
    assert failed and all(t.params['lr'] == -1.0 and 'learning rate' in
                          t.user_attrs['rejected'] for t in failed)
    assert not any(osp.exists(osp.join(folder, 'trials',
                                       f'trial-{t.number:04d}'))
                   for t in failed)  # no folder for a rejected trial
    space = SearchSpace('lightgcn', {'lr': [-1.0, -2.0]}, FIXED)
    with pytest.raises(ValueError, match='5 trials in a row were rejected'):
        run_study(space, small(), 'small', str(tmp_path / 'bad'), trials=2,
                  pruner='none', final_seeds=0)


def test_search_never_computes_test_metrics(tmp_path, monkeypatch):
    splits = []
    evaluate = Trainer.evaluate

    def spy(self, split, *args, **kwargs):
        splits.append(split)
        return evaluate(self, split, *args, **kwargs)
    monkeypatch.setattr(Trainer, 'evaluate', spy)
    folder = str(tmp_path / 'study')
    summary = run_study(lightgcn_space(), small(), 'small', folder, trials=2,
                        pruner='none', final_seeds=0)
    assert summary['complete'] == 2 and summary['final'] is None
    assert splits and set(splits) == {'val'}
    for n in (0, 1):
        run = osp.join(folder, 'trials', f'trial-{n:04d}')
        with open(osp.join(run, 'results.json')) as f:
            results = json.load(f)
        assert results['test'] is None
        assert all('test' not in r for r in results['history'])
        assert not osp.exists(osp.join(run, 'best.pt'))  # not kept
    # The same command again: the budget is spent, the final runs are done
    # (test metrics, once per seed, at the best validation epoch).
    splits.clear()
    summary = run_study(lightgcn_space(), small(), 'small', folder, trials=2,
                        pruner='none', final_seeds=2)
    assert summary['ran_here'] == 0
    assert splits.count('test') >= 2
    final = summary['final']
    assert final['best_trial'] in (0, 1) and final['seeds'] == 2
    values = final['test']['recall@20']['values']
    assert len(values) == 2 and 0 < final['test']['recall@20']['mean'] < 1
    study, _ = load_study(folder)
    assert final['val'] == max(t.value for t in study.get_trials())


def test_a_pruned_trial_stops_early(tmp_path):
    folder = str(tmp_path / 'study')
    pruner = optuna.pruners.ThresholdPruner(lower=2.0)  # always below
    summary = run_study(lightgcn_space(), small(), 'small', folder, trials=2,
                        pruner=pruner, final_seeds=1)
    assert summary['pruned'] == 2 and summary['complete'] == 0
    assert summary['final'] is None  # nothing complete to re-train
    for n in (0, 1):
        with open(osp.join(folder, 'trials', f'trial-{n:04d}',
                           'trial.json')) as f:
            trial = json.load(f)
        assert trial['pruned'] and trial['epochs_run'] == 1  # of 3


def _worker(folder, trials, barrier):
    import pyg_mmrec.tune.study as module
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_trial, waited = module.run_trial, []

    def first_trial_waits(*args, **kwargs):
        # Each worker's first trial runs while the other's does: both take
        # part however slowly either process starts.
        if not waited:
            waited.append(barrier.wait(timeout=300))
        return run_trial(*args, **kwargs)
    module.run_trial = first_trial_waits
    run_study(lightgcn_space(), small(), 'small', folder, trials=trials,
              pruner='none', final_seeds=0)


def test_two_workers_share_one_study(tmp_path):
    folder = str(tmp_path / 'study')
    ctx = multiprocessing.get_context('spawn')
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_worker, args=(folder, 5, barrier))
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=600)
        assert p.exitcode == 0
    study, _ = load_study(folder)
    done = [t for t in study.get_trials()
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == 5
    assert len({t.number for t in done}) == 5
    assert len({t.params['lr'] for t in done}) == 5  # no draw repeated
    workers = {t.user_attrs['worker'] for t in done}
    assert len(workers) == 2  # both took part
    for t in study.get_trials():  # the others: skipped at the budget
        if t not in done:
            assert t.state == TrialState.FAIL and t.user_attrs['skipped']
    for t in done:
        assert osp.isfile(osp.join(folder, 'trials',
                                   f'trial-{t.number:04d}', 'results.json'))


def test_an_mmrec_grid_runs_every_combination_once(tmp_path):
    path = tmp_path / 'grid.yaml'
    path.write_text(yaml.safe_dump({
        'hyper_parameters': ['n_layers', 'reg_weight'],
        'n_layers': [1, 2], 'reg_weight': [0.0, 0.001],
        'learning_rate': 0.01, 'epochs': 2, 'eval_batch_size': 512}))
    space = load_space('lightgcn', str(path))
    assert space.grid and space.size() == 4
    assert space.fixed == {'lr': 0.01, 'epochs': 2, 'eval_batch_size': 512}
    folder = str(tmp_path / 'study')
    summary = run_study(space, small(), 'small', folder, trials=20,
                        pruner='none', final_seeds=0)
    assert summary['complete'] == 4 and summary['ran_here'] == 4
    study, _ = load_study(folder)
    seen = sorted((t.params['num_layers'], t.params['reg_weight'])
                  for t in study.get_trials())
    assert seen == [(1, 0.0), (1, 0.001), (2, 0.0), (2, 0.001)]
    with open(osp.join(folder, 'trials', 'trial-0000',
                       'results.json')) as f:
        config = json.load(f)['config']
    assert config['trainer']['lr'] == 0.01


def test_an_interrupted_study_resumes(tmp_path, monkeypatch):
    import pyg_mmrec.tune.study as module
    folder = str(tmp_path / 'study')
    run_trial = module.run_trial
    calls = []

    def interrupted(trial, *args, **kwargs):
        calls.append(trial.number)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return run_trial(trial, *args, **kwargs)
    monkeypatch.setattr(module, 'run_trial', interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_study(lightgcn_space(), small(), 'small', folder, trials=3,
                  pruner='none', final_seeds=0)
    assert states(folder) == [TrialState.COMPLETE, TrialState.FAIL]
    monkeypatch.setattr(module, 'run_trial', run_trial)
    summary = run_study(lightgcn_space(), small(), 'small', folder,
                        trials=3, pruner='none', final_seeds=0)
    assert summary['ran_here'] == 2 and summary['complete'] == 3
    # A worker killed mid-trial leaves it running; the next run on this
    # machine fails it, since its process is gone.
    study, _ = load_study(folder)
    trial = study.ask()
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    trial.set_user_attr('worker', f'{os.uname().nodename}:{dead.pid}')
    alive = study.ask()
    alive.set_user_attr('worker', f'{os.uname().nodename}:{os.getpid()}')
    assert fail_interrupted_trials(study) == [trial.number]
    # another machine's trial (its process unknown here): only on request
    alive.set_user_attr('worker', 'elsewhere:1')
    assert fail_interrupted_trials(study) == []
    assert fail_interrupted_trials(study, every=True) == [alive.number]


def test_best_yaml_loads_with_train_config(tmp_path):
    folder = str(tmp_path / 'study')
    summary = run_study(lightgcn_space(), small(), 'small', folder, trials=2,
                        pruner='none', final_seeds=1)
    best = osp.join(folder, 'best.yaml')
    sections = load_config(best, 'lightgcn')
    assert {k: v for k, v in sections.items() if v} == summary['final'][
        'settings']
    assert sections['model']['num_layers'] == summary['final']['params'][
        'num_layers']
    out = str(tmp_path / 'run')
    assert main(['train', '--model', 'lightgcn', '--config', best,
                 '--epochs', '1', '--no-progress', '--output-dir', out]) == 0
    with open(osp.join(out, 'results.json')) as f:
        config = json.load(f)['config']
    assert config['trainer']['lr'] == pytest.approx(
        summary['final']['params']['lr'])
    report = write_study_report(folder, str(tmp_path / 'report'))
    assert {'trials.md', 'best_so_far.png', 'importance.png'} <= set(
        report['files'])
    assert '**' in report['text'] and 'test recall@20' in report['text']
    # The run report leaves the trials out (no test metrics): the final
    # runs are reported, the trials alone are refused with a clear error.
    assert main(['report', folder + '/trials', '--output',
                 str(tmp_path / 'r1')]) == 2
    assert main(['report', folder + '/final', '--output',
                 str(tmp_path / 'r2')]) == 0
    # The leaderboard row of the study (experiments/tune_leaderboard.py).
    spec = importlib.util.spec_from_file_location(
        'tune_leaderboard', osp.join(osp.dirname(__file__), '..', '..',
                                     'experiments', 'tune_leaderboard.py'))
    board = importlib.util.module_from_spec(spec)
    sys.path.insert(0, osp.dirname(spec.origin))
    try:
        spec.loader.exec_module(board)
    finally:
        sys.path.remove(osp.dirname(spec.origin))
    row = board.study_row(folder)
    assert (row['complete'], row['pruned'], row['trials']) == (2, 0, 2)
    assert row['final']['test']['recall@20']['mean'] == summary['final'][
        'test']['recall@20']['mean']
    assert row['search_cpu_hours'] > 0 and row['final_hours'] > 0
    assert row['final_unit'] == 'CPU'
    rec = summary['final']['test']['recall@20']
    assert f"{rec['mean']:.4f} ± {rec['std']:.4f}" in board.to_markdown([row])
    # defaults from the runs' results.json, by pattern
    assert board.default_result(
        osp.join(folder, 'final', 'seed*', 'results.json'), 'lightgcn',
        'recall@20') == (rec['mean'], 0.0, 1)
    going = board.to_markdown([{**row, 'final': None}])
    assert '| 2 / 0 (of 2, in progress) |' in going and 'not yet' in going
    readme = board.to_readme_markdown([row, {**row, 'final': None}])
    assert f"| LightGCN | - | {rec['mean']:.4f} ± {rec['std']:.4f} |" in readme
    assert (f"in progress (best validation so far {row['best_val']:.4f}) | "
            f"- | 2 / 0 of 2 |") in readme
    board.copy_study(folder, str(tmp_path / 'kept'))
    kept = tmp_path / 'kept'
    assert (kept / 'journal.log').exists() and (kept / 'best.yaml').exists()
    assert not list(kept.rglob('*.pt'))
    assert write_study_report(str(kept), str(tmp_path / 'r3'))['trials']


def test_the_command_line_fixes_settings_over_the_search(tmp_path):
    space = lightgcn_space()
    space.fix({'num_layers': 3, 'epochs': 2})
    assert list(space.params) == ['lr'] and space.fixed['num_layers'] == 3
    folder = str(tmp_path / 'study')
    run_study(space, small(), 'small', folder, trials=2, pruner='none',
              final_seeds=0)
    for n in (0, 1):
        with open(osp.join(folder, 'trials', f'trial-{n:04d}',
                           'results.json')) as f:
            results = json.load(f)
        assert results['config']['model']['num_layers'] == 3
        assert results['epochs_run'] == 2
    with pytest.raises(ValueError, match='every searched setting'):
        space.fix({'lr': 1e-3})
    with pytest.raises(ValueError, match="unknown setting 'bogus'"):
        lightgcn_space().fix({'bogus': 1})


def test_bad_spaces_and_arguments_exit_2_naming_the_problem(tmp_path,
                                                            capsys):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('lr: {low: 1.0e-3, high: 1.0e-2}\nbogus: [1, 2]\n')
    assert main(['tune', '--model', 'lightgcn', '--space', str(bad),
                 '--output-dir', str(tmp_path / 's')]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "unknown setting 'bogus'" in err
    bad.write_text('lr: {low: 1.0e-2, high: 1.0e-3}\n')
    assert main(['tune', '--model', 'lightgcn', '--space',
                 str(bad)]) == 2
    assert 'low <= high' in capsys.readouterr().err
    assert main(['tune', '--model', 'lightgcn', '--space',
                 str(tmp_path / 'missing.yaml')]) == 2
    assert 'missing.yaml' in capsys.readouterr().err
    assert main(['tune', '--model', 'lightgcn', '--trials', '0',
                 '--output-dir', str(tmp_path / 's0')]) == 2
    assert '--trials' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['tune', '--help'])
    text = capsys.readouterr().out
    for option in ('--model', '--dataset', '--data-root', '--config',
                   '--space', '--trials', '--storage', '--study', '--pruner',
                   '--final-seeds', '--output-dir', '--seed', '--device',
                   '--keep-checkpoints', '--fail-running', '--tensorboard'):
        assert option in text


def scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )
    events = EventAccumulator(folder)
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()['scalars']}


def test_tensorboard_scalars_of_trials_final_runs_and_train(tmp_path):
    folder, tb = str(tmp_path / 'study'), str(tmp_path / 'tb')
    run_study(lightgcn_space(), small(), 'small', folder, trials=1,
              pruner='none', final_seeds=1, tensorboard=tb)
    with open(osp.join(folder, 'trials', 'trial-0000',
                       'results.json')) as f:
        history = json.load(f)['history']
    trial = scalars(osp.join(tb, 'trial-0000'))
    assert trial['val/recall@20'] == [
        (r['epoch'], pytest.approx(r['val']['recall@20'], rel=1e-6))
        for r in history]
    assert [s for s, _ in trial['loss/bpr']] == [1, 2, 3]
    assert not any(tag.startswith('test/') for tag in trial)  # a trial
    final = scalars(osp.join(tb, 'final-seed0'))
    assert 'test/recall@20' in final and 'val/ndcg@20' in final
    out, tb2 = str(tmp_path / 'run'), str(tmp_path / 'tb2')
    assert main(['train', '--model', 'lightgcn', '--epochs', '2',
                 '--no-progress', '--output-dir', out,
                 '--tensorboard', tb2]) == 0
    assert [s for s, _ in scalars(tb2)['loss/reg']] == [1, 2]
