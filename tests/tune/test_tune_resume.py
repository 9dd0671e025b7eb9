"""An interrupted trial, and interrupted final runs, continue from their last
epoch when the study is run again (pyg_mmrec.tune.resume)."""
import json
import os
import os.path as osp
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState
from tune_helpers import lightgcn_space, small, states

import pyg_mmrec.tune.study as module
from pyg_mmrec.experiment import build_trainer
from pyg_mmrec.train import TrainingDiverged
from pyg_mmrec.tune import run_study
from pyg_mmrec.tune.report import load_study, trial_rows, write_study_report
from pyg_mmrec.tune.resume import release_stale_claim

optuna.logging.set_verbosity(optuna.logging.WARNING)


def uninterrupted_val(space, params, data, epochs):
    r"""The validation Recall@20 per epoch of the settings run without a
    break, as a trial runs them."""
    settings = {**space.fixed, **params}
    trainer, record = build_trainer('lightgcn', data, settings, 0,
                                    progress=False)
    results = trainer.fit(config=record, test=False)
    return [r['val']['recall@20'] for r in results['history']][:epochs]


def interrupt_at(monkeypatch, epoch, trial_numbers=(0, ), final=False):
    r"""Makes the trainer raise KeyboardInterrupt after :obj:`epoch` of the
    given trials (or of the final run of seed 1), as a killed worker."""
    original = module.CpuProgress.__call__

    def call(self, trainer, record):
        original(self, trainer, record)
        run = osp.basename(osp.dirname(self.path))
        hit = (run == 'seed1' if final else
               any(run == f'trial-{n:04d}' for n in trial_numbers))
        if hit and record['epoch'] == epoch:
            raise KeyboardInterrupt
    monkeypatch.setattr(module.CpuProgress, '__call__', call)


def count_epochs(monkeypatch):
    r"""The epochs trained from now on (a list that grows)."""
    from pyg_mmrec.train import Trainer
    original, trained = Trainer.train_epoch, []

    def train_epoch(self, epoch, *args, **kwargs):
        trained.append(epoch)
        return original(self, epoch, *args, **kwargs)
    monkeypatch.setattr(Trainer, 'train_epoch', train_epoch)
    return trained


def test_an_interrupted_trial_continues_from_its_last_epoch(tmp_path,
                                                            monkeypatch):
    folder, data = str(tmp_path / 'study'), small()
    space = lightgcn_space(epochs=4, patience=10)
    interrupt_at(monkeypatch, epoch=2)
    with pytest.raises(KeyboardInterrupt):
        run_study(space, data, 'small', folder, trials=2, pruner='none',
                  final_seeds=0)
    old = osp.join(folder, 'trials', 'trial-0000')
    assert osp.isfile(osp.join(old, 'last.pt'))
    with open(osp.join(old, 'progress.json')) as f:
        progress = json.load(f)
    assert progress['epoch'] == 2 and progress['cpu_seconds'] > 0
    # An earlier process's count (made large to tell it from this one's)
    with open(osp.join(old, 'progress.json'), 'w') as f:
        json.dump({'epoch': 2, 'cpu_seconds': 1000.0}, f)
    monkeypatch.undo()

    trained = count_epochs(monkeypatch)
    summary = run_study(space, data, 'small', folder, trials=2,
                        pruner='none', final_seeds=0)
    assert summary['complete'] == 2 and summary['ran_here'] == 2
    assert trained == [3, 4, 1, 2, 3, 4]  # the continued trial, then trial 2
    study, _ = load_study(folder)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL,
                                         TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    first, again = trials[0], trials[1]
    assert again.params == first.params and again.user_attrs[
        'resumes'] == 0
    # Epochs 1-2 from the interrupted run, 3-4 trained now: the values are
    # those of an uninterrupted run (exact resume), all known to the pruner.
    assert sorted(again.intermediate_values) == [1, 2, 3, 4]
    expected = uninterrupted_val(space, first.params, data, 4)
    assert [again.intermediate_values[e] for e in (1, 2, 3, 4)] == \
        pytest.approx(expected, abs=1e-12)
    with open(osp.join(folder, 'trials', 'trial-0001', 'trial.json')) as f:
        record = json.load(f)
    assert record['continues'] == 0 and record['epochs_run'] == 4
    assert 1000.0 < record['cpu_seconds'] < 1060.0  # its own added
    with open(osp.join(folder, 'trials', 'trial-0001',
                       'results.json')) as f:
        history = json.load(f)['history']
    assert [r['epoch'] for r in history] == [1, 2, 3, 4]
    assert not osp.exists(osp.join(old, 'last.pt'))  # moved, not copied
    report = write_study_report(folder, str(tmp_path / 'report'))
    assert '| 1 | complete (continues 0) |' in report['text']
    # A running trial's epochs and CPU seconds so far, from its progress.
    running = study.ask()
    progress = osp.join(folder, 'trials', f'trial-{running.number:04d}')
    os.makedirs(progress)
    with open(osp.join(progress, 'progress.json'), 'w') as f:
        json.dump({'epoch': 7, 'cpu_seconds': 12.5}, f)
    row = trial_rows(study, folder)[running.number]
    assert (row['state'], row['epochs_run'], row['cpu_seconds']) == (
        'running', 7, 12.5)
    assert trial_rows(study)[running.number]['cpu_seconds'] is None
    study.tell(running, state=TrialState.FAIL)
    # trial 0 is queued again once: a third run runs nothing (the 4th
    # trial is the one asked above, failed without a checkpoint)
    summary = run_study(space, data, 'small', folder, trials=2,
                        pruner='none', final_seeds=0)
    assert summary['ran_here'] == 0 and len(states(folder)) == 4


def test_a_trial_interrupted_before_its_first_epoch_is_drawn_again(
        tmp_path, monkeypatch):
    folder = str(tmp_path / 'study')
    run_trial, calls = module.run_trial, []

    def interrupted(trial, *args, **kwargs):
        calls.append(trial.number)
        if len(calls) == 1:
            raise KeyboardInterrupt  # before any checkpoint
        return run_trial(trial, *args, **kwargs)
    monkeypatch.setattr(module, 'run_trial', interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_study(lightgcn_space(), small(), 'small', folder, trials=1,
                  pruner='none', final_seeds=0)
    summary = run_study(lightgcn_space(), small(), 'small', folder,
                        trials=1, pruner='none', final_seeds=0)
    study, _ = load_study(folder)
    assert summary['complete'] == 1
    assert 'resumes' not in study.get_trials()[1].user_attrs


def test_interrupted_final_runs_continue_and_finished_ones_are_kept(
        tmp_path, monkeypatch):
    folder, data = str(tmp_path / 'study'), small()
    space = lightgcn_space(epochs=3, patience=10)
    interrupt_at(monkeypatch, epoch=2, trial_numbers=(), final=True)
    with pytest.raises(KeyboardInterrupt):
        run_study(space, data, 'small', folder, trials=1, pruner='none',
                  final_seeds=2)
    seed0 = osp.join(folder, 'final', 'seed0', 'results.json')
    finished = os.stat(seed0).st_mtime_ns
    assert osp.isfile(osp.join(folder, 'final', 'seed1', 'last.pt'))
    assert not osp.exists(osp.join(folder, 'final.claimed'))
    monkeypatch.undo()

    trained = count_epochs(monkeypatch)
    summary = run_study(space, data, 'small', folder, trials=1,
                        pruner='none', final_seeds=2)
    assert trained == [3]  # seed 1's last epoch only
    final = summary['final']
    assert final is not None and final['seeds'] == 2
    assert os.stat(seed0).st_mtime_ns == finished  # read, not re-trained
    with open(osp.join(folder, 'final', 'seed1', 'results.json')) as f:
        seed1 = json.load(f)
    assert [r['epoch'] for r in seed1['history']] == [1, 2, 3]
    # the continued seed scores as a run without a break
    settings = {**space.fixed, **final['params']}
    trainer, record = build_trainer('lightgcn', data, settings, 1,
                                    progress=False)
    whole = trainer.fit(config=record)
    assert final['test']['recall@20']['values'][1] == pytest.approx(
        whole['test']['recall@20'], abs=1e-12)


def test_the_final_runs_claim_of_a_worker_that_is_gone_is_released(
        tmp_path):
    path = str(tmp_path / 'final.claimed')
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    with open(path, 'w') as f:
        f.write(f'{os.uname().nodename}:{dead.pid}')
    assert release_stale_claim(path) and not osp.exists(path)
    with open(path, 'w') as f:  # a live worker's claim stays ...
        f.write(f'{os.uname().nodename}:{os.getpid()}')
    assert not release_stale_claim(path) and osp.exists(path)
    with open(path, 'w') as f:  # ... as another machine's, unless asked
        f.write('elsewhere:1')
    assert not release_stale_claim(path)
    assert release_stale_claim(path, every=True) and not osp.exists(path)


def test_a_diverged_trial_is_pruned_and_the_search_goes_on(tmp_path,
                                                           monkeypatch):
    folder = str(tmp_path / 'study')
    original = module.CpuProgress.__call__

    def call(self, trainer, record):
        original(self, trainer, record)
        if self.path.endswith(osp.join('trial-0000', 'progress.json')) \
                and record['epoch'] == 2:
            raise TrainingDiverged(2, "loss term 'bpr' of batch 1")
    monkeypatch.setattr(module.CpuProgress, '__call__', call)
    summary = run_study(lightgcn_space(), small(), 'small', folder,
                        trials=2, pruner='none', final_seeds=1)
    assert (summary['pruned'], summary['complete']) == (1, 1)
    assert summary['final']['best_trial'] == 1
    study, _ = load_study(folder)
    diverged = study.get_trials()[0]
    assert diverged.state == TrialState.PRUNED
    assert 'diverged at epoch 2' in diverged.user_attrs['diverged']
    assert diverged.user_attrs['epochs_run'] == 2
    report = write_study_report(folder, str(tmp_path / 'report'))
    assert '| 0 | pruned (diverged) |' in report['text']


def test_a_continued_study_draws_as_one_process_would_and_never_repeats(
        tmp_path):
    data, space = small(), lightgcn_space(epochs=1)
    continued, whole = str(tmp_path / 'continued'), str(tmp_path / 'whole')
    run_study(space, data, 'small', continued, trials=2, pruner='none',
              final_seeds=0)
    run_study(space, data, 'small', continued, trials=4, pruner='none',
              final_seeds=0)  # a second process continues the study
    run_study(space, data, 'small', whole, trials=4, pruner='none',
              final_seeds=0)

    def drawn(folder):
        study, _ = load_study(folder)
        return [t.params['lr'] for t in study.get_trials()]
    # A sampler seeded once per process would draw trial 0's lr again.
    assert len(set(drawn(continued))) == 4
    assert drawn(continued) == drawn(whole)
