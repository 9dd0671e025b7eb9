r"""Hyper-parameter search on the validation split (Optuna), and the final
runs of the best settings (see :func:`run_study`).

A study lives in a folder: :obj:`study.json` (what is searched, how),
Optuna's storage (by default the journal file :obj:`journal.log`; any
Optuna storage URL, e.g. :obj:`sqlite:///study.db` or a PostgreSQL URL
shared by workers on several machines), one folder per trial under
:obj:`trials/` with its :obj:`results.json` (validation metrics only) and
:obj:`trial.json`, and at the end :obj:`final/seed<k>/` (the best settings
re-trained with test metrics), :obj:`final.json` and :obj:`best.yaml`.
Interrupted trials and final runs continue from their checkpoints
(:mod:`~pyg_mmrec.tune.resume`)."""
import json
import logging
import os
import os.path as osp
import shutil
import statistics
from typing import Any, Dict, List, Mapping, Optional

from ..config import complete_config, resolve_config
from ..experiment import build_trainer
from ..train.divergence import TrainingDiverged
from ..train.records import write_json
from .resume import (
    CpuProgress,
    claim,
    continue_from,
    cpu_seconds_before,
    release_stale_claim,
    requeue_interrupted,
    trial_dir,
    worker_alive,
    worker_id,
)
from .space import SearchSpace

log = logging.getLogger('pyg_mmrec')

#: The pruners of :func:`build_pruner` by name.
PRUNERS = ('median', 'hyperband', 'none')


def open_storage(url: Optional[str], folder: str):
    r"""Optuna's storage: the journal file :obj:`<folder>/journal.log` by
    default, any other file path as a journal file, or an Optuna storage
    URL (:obj:`sqlite:///...`, :obj:`postgresql://...`)."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend
    if url is None:
        url = osp.join(folder, 'journal.log')
    if '://' not in url:
        return JournalStorage(JournalFileBackend(url))
    return RDBStorage(url)


def build_pruner(name, max_epochs: int):
    r"""The pruner :obj:`name`: :obj:`"median"` (stop a trial whose
    validation metric is below the median of earlier trials at the same
    epoch, after 5 trials and 5 epochs), :obj:`"hyperband"` (from 5 epochs
    to the epoch cap), :obj:`"none"`, or an Optuna pruner itself."""
    import optuna
    if isinstance(name, optuna.pruners.BasePruner):
        return name
    if name == 'median':
        return optuna.pruners.MedianPruner(n_startup_trials=5,
                                           n_warmup_steps=5)
    if name == 'hyperband':
        return optuna.pruners.HyperbandPruner(
            min_resource=min(5, max_epochs), max_resource=max_epochs)
    if name == 'none':
        return optuna.pruners.NopPruner()
    raise ValueError(f"--pruner must be one of {PRUNERS}, got {name!r}")


def fail_interrupted_trials(study, every: bool = False) -> List[int]:
    r"""Marks as failed the running trials whose worker process on this
    machine is gone (an interrupted :obj:`tune`), or every running trial
    with :obj:`every` (a worker on a machine that is gone; no other worker
    may be running), so that the budget counts the trials that can still
    finish; returns their numbers."""
    from optuna.trial import TrialState
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, )):
        worker = t.user_attrs.get('worker')
        if every or worker is not None and not worker_alive(worker):
            study.tell(t.number, state=TrialState.FAIL)
            failed.append(t.number)
    return failed


def _counted(study, below: Optional[int] = None) -> int:
    from optuna.trial import TrialState
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return sum(1 for t in study.get_trials(deepcopy=False, states=states)
               if below is None or t.number < below)


class RejectedSettings(ValueError):
    r"""A trial's settings that the model or the trainer refuses (a value
    inside the space's ranges that the model does not accept, or a
    combination of values that it does not)."""


#: Trials rejected in a row after which :func:`search` gives up: the
#: space (or the settings it fixes) is wrong, not one unlucky draw.
MAX_REJECTED_IN_A_ROW = 5


class PruningCallback:
    r"""Reports each evaluation's validation metric to the trial and stops
    the run (the trainer's callback returns :obj:`False`) when the pruner
    says so."""
    def __init__(self, trial):
        self.trial, self.pruned = trial, False

    def __call__(self, trainer, record) -> Optional[bool]:
        value = record.get('val', {}).get(trainer.metric)
        if value is None:
            return None
        self.trial.report(value, record['epoch'])
        if self.trial.should_prune():
            self.pruned = True
            return False
        return None


def _callbacks(tensorboard: Optional[str], name: str) -> list:
    # TensorBoard scalars of one run in <tensorboard>/<name>, if asked.
    if tensorboard is None:
        return []
    from ..train.tensorboard import TensorBoardScalars
    return [TensorBoardScalars(osp.join(tensorboard, name))]


def run_trial(trial, space: SearchSpace, data, base: Mapping[str, Any],
              folder: str, seed: int, device: str,
              keep_checkpoints: bool,
              tensorboard: Optional[str] = None) -> Dict[str, Any]:
    r"""Trains one trial's settings on the validation split only (no test
    metric is computed) and returns its :obj:`trial.json` record
    (TensorBoard scalars in :obj:`<tensorboard>/trial-NNNN` if given).
    A trial queued again for an interrupted one (user attribute
    :obj:`resumes`, see :func:`~pyg_mmrec.tune.resume.requeue_interrupted`)
    continues from its checkpoint: the epochs already run are reported to
    the trial again, and their CPU seconds count. A run that diverges
    (:class:`~pyg_mmrec.train.TrainingDiverged`) ends the trial, recorded
    under :obj:`"diverged"`."""
    settings = {**base, **space.suggest(trial)}
    run_dir = trial_dir(folder, trial.number)
    try:  # (the run folder is made once the settings are accepted)
        trainer, record = build_trainer(space.model, data, settings, seed,
                                        device, run_dir, progress=False)
    except ValueError as e:  # the model or trainer refuses these values
        raise RejectedSettings(str(e)) from None
    resumes = trial.user_attrs.get('resumes')
    history = None
    if resumes is not None:
        history = continue_from(trial_dir(folder, resumes), run_dir, record,
                                trainer.metric)
        for epoch in history or []:
            trial.report(epoch['val'][trainer.metric], epoch['epoch'])
        if history is not None:
            log.info("trial %d continues trial %d after epoch %d",
                     trial.number, resumes, history[-1]['epoch']
                     if history else 0)
    os.makedirs(run_dir, exist_ok=True)
    pruning = PruningCallback(trial)
    cpu = CpuProgress(run_dir, history)
    diverged = None
    try:
        results = trainer.fit(
            resume=history is not None, config=record, test=False,
            callbacks=[*_callbacks(tensorboard, f'trial-{trial.number:04d}'),
                       cpu, pruning])
    except TrainingDiverged as e:  # bad settings: the search goes on
        diverged = str(e)
        with open(osp.join(run_dir, 'results.json')) as f:
            results = json.load(f)
    if not keep_checkpoints:
        for name in ('last.pt', 'best.pt'):
            if osp.exists(osp.join(run_dir, name)):
                os.remove(osp.join(run_dir, name))
    out = {'number': trial.number, 'params': trial.params,
           'value': results['val'].get(trainer.metric),
           'metric': trainer.metric, 'pruned': pruning.pruned,
           'best_epoch': results['best_epoch'],
           'epochs_run': results['epochs_run'],
           'cpu_seconds': cpu.cpu_seconds, 'run_dir': run_dir,
           'continues': resumes if history is not None else None,
           'diverged': diverged}
    write_json(out, osp.join(run_dir, 'trial.json'))
    return out


def search(study, space: SearchSpace, trials: int, data,
           base: Mapping[str, Any], folder: str, seed: int = 0,
           device: str = 'cpu', keep_checkpoints: bool = False,
           tensorboard: Optional[str] = None) -> int:
    r"""Runs trials of :obj:`study` until it holds :obj:`trials` finished
    or running ones (counting every worker's); returns how many this
    process ran. Trial numbers come from the storage, so two workers never
    run the same trial; a worker that asks for a trial beyond the budget
    (two asked at once for the last one) fails it unrun. A trial whose
    settings the model refuses fails with the reason (user attribute
    :obj:`rejected`) and does not count; :obj:`MAX_REJECTED_IN_A_ROW` in a
    row raise :class:`ValueError`. A trial whose training diverges is
    pruned (user attribute :obj:`diverged`, the message) and counts."""
    from optuna.trial import TrialState
    ran = rejected = 0
    while _counted(study) < trials:
        trial = study.ask()
        trial.set_user_attr('worker', worker_id())
        if _counted(study, below=trial.number) >= trials:
            trial.set_user_attr('skipped', 'the budget was reached')
            study.tell(trial, state=TrialState.FAIL)
            break
        try:
            out = run_trial(trial, space, data, base, folder, seed, device,
                            keep_checkpoints, tensorboard)
        except RejectedSettings as e:
            # A failed trial is not counted: the budget draws another.
            trial.set_user_attr('rejected', str(e))
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d: %s rejected: %s", trial.number,
                        trial.params, e)
            rejected += 1
            if rejected >= MAX_REJECTED_IN_A_ROW:
                raise ValueError(
                    f"{space.source}: {rejected} trials in a row were "
                    f"rejected by {space.model!r}; the last: {e}") from None
            continue
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        rejected = 0
        for key in ('epochs_run', 'best_epoch', 'cpu_seconds', 'run_dir'):
            trial.set_user_attr(key, out[key])
        if out['diverged'] is not None:
            # Stopped early by its settings, as a pruned trial is: it
            # counts, the sampler learns from it, it cannot be the best.
            trial.set_user_attr('diverged', out['diverged'])
            study.tell(trial, state=TrialState.PRUNED)
            log.warning("trial %d: %s diverged: %s", trial.number,
                        trial.params, out['diverged'])
            ran += 1
            continue
        if out['pruned']:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, out['value'])
        ran += 1
        log.info("trial %d: %s %s = %.4f%s", trial.number, trial.params,
                 out['metric'], out['value'] or float('nan'),
                 ' (pruned)' if out['pruned'] else '')
    return ran


def best_sections(space: SearchSpace, base: Mapping[str, Any],
                  params: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    r"""The best trial's settings by section, as a section of
    :obj:`experiments/configs/<dataset>.yaml`."""
    sections = resolve_config(space.model, {**base, **space.fixed, **params})
    return {name: values for name, values in sections.items() if values}


def _final_run(trainer, record, run_dir: str, tensorboard: Optional[str],
               name: str):
    r"""One final run in :obj:`run_dir`: its results if an earlier process
    finished it with these settings, else trained, continuing from its
    checkpoint if an earlier one was interrupted (a folder of other
    settings is cleared first); returns the results and the run's CPU
    seconds, every process's together."""
    done = osp.join(run_dir, 'results.json')
    if osp.isfile(done):
        with open(done) as f:
            results = json.load(f)
        if results.get('config') == record and results.get('test'):
            return results, cpu_seconds_before(run_dir)
    history = None
    if osp.isfile(osp.join(run_dir, 'last.pt')):
        history = continue_from(run_dir, run_dir, record, trainer.metric)
        if history is None:
            shutil.rmtree(run_dir)
    cpu = CpuProgress(run_dir, history)
    results = trainer.fit(resume=history is not None, config=record,
                          callbacks=[*_callbacks(tensorboard, name), cpu])
    return results, cpu.cpu_seconds


def final_runs(study, space: SearchSpace, data, base: Mapping[str, Any],
               folder: str, seeds: int, device: str = 'cpu',
               tensorboard: Optional[str] = None) -> Dict[str, Any]:
    r"""Re-trains the best trial's settings with seeds :obj:`0..seeds-1`
    (test metrics computed once, at each run's best validation epoch) and
    writes :obj:`final.json` (test mean and standard deviation per metric)
    and :obj:`best.yaml`. Runs an earlier process finished are read, not
    trained again; an interrupted one continues from its checkpoint."""
    import yaml
    best = study.best_trial
    sections = best_sections(space, base, best.params)
    runs, cpu_seconds = [], 0.0
    for seed in range(seeds):
        run_dir = osp.join(folder, 'final', f'seed{seed}')
        trainer, record = build_trainer(space.model, data, sections, seed,
                                        device, run_dir, progress=False)
        results, cpu = _final_run(trainer, record, run_dir, tensorboard,
                                  f'final-seed{seed}')
        runs.append(results)
        cpu_seconds += cpu
    test = {}
    for key in runs[0]['test']:
        values = [r['test'][key] for r in runs]
        test[key] = {'mean': statistics.fmean(values),
                     'std': statistics.stdev(values) if len(values) > 1
                     else 0.0, 'values': values}
    out = {'model': space.model, 'best_trial': best.number,
           'params': best.params, 'val': best.value,
           'metric': runs[0]['metric'], 'seeds': seeds, 'test': test,
           'best_epochs': [r['best_epoch'] for r in runs],
           'cpu_seconds': cpu_seconds, 'settings': sections}
    write_json(out, osp.join(folder, 'final.json'))
    tmp = osp.join(folder, 'best.yaml.tmp')
    with open(tmp, 'w') as f:
        f.write(f"# the best of study '{study.study_name}' (trial "
                f"{best.number}, validation {runs[0]['metric']} "
                f"{best.value:.4f}); drops into "
                f"experiments/configs/<dataset>.yaml\n")
        yaml.safe_dump({space.model: sections}, f, sort_keys=False)
    os.replace(tmp, osp.join(folder, 'best.yaml'))
    return out


def run_study(space: SearchSpace, data, dataset: str, folder: str,
              trials: int, base: Optional[Mapping[str, Any]] = None,
              storage: Optional[str] = None, study_name: Optional[str] = None,
              pruner: str = 'median', final_seeds: int = 3, seed: int = 0,
              device: str = 'cpu', keep_checkpoints: bool = False,
              fail_running: bool = False,
              tensorboard: Optional[str] = None) -> Dict[str, Any]:
    r"""Searches :obj:`space` on :obj:`data` (see :obj:`search`; the same
    folder, storage and study name continue a study, and its interrupted
    trials and final runs continue from their last epoch: see
    :mod:`~pyg_mmrec.tune.resume`), then, once every
    trial of the budget has ended, re-trains the best settings
    (:obj:`final_runs`). Returns a summary: trials run here, the study's
    counts, and :obj:`final.json`'s content when the final runs are done.

    Args:
        space (SearchSpace): What to search.
        data (HeteroData): The dataset.
        dataset (str): Its name, recorded.
        folder (str): The study folder.
        trials (int): The budget of trials (finished or pruned), all
            workers together; a grid runs at most its combinations.
        base (Mapping, optional): Settings of every trial (the YAML
            file), under the space's own (:obj:`space.fixed`, with the
            command line's: :meth:`~pyg_mmrec.tune.SearchSpace.fix`).
        storage (str, optional): Optuna storage URL (see
            :obj:`open_storage`).
        study_name (str, optional): Default :obj:`"<model>-<dataset>"`.
        pruner (str or optuna.pruners.BasePruner): See
            :obj:`build_pruner`. (default: :obj:`"median"`)
        final_seeds (int): Seeds of the final runs (:obj:`0`: none).
        seed (int): Seed of the trials and of the sampler.
        device (str): Device.
        keep_checkpoints (bool): Keep each trial's :obj:`best.pt` and
            :obj:`last.pt`. (default: :obj:`False`)
        fail_running (bool): First mark every running trial failed (see
            :obj:`fail_interrupted_trials`) and release the final runs'
            claim, whoever holds them (workers on a machine that is gone;
            no other worker may be running). (default: :obj:`False`)
        tensorboard (str, optional): Write each run's TensorBoard scalars
            under this folder (:obj:`trial-NNNN`, :obj:`final-seedK`).
    """
    import optuna
    from optuna.trial import TrialState

    from .sampler import TrialSeededSampler
    if trials < 1:
        raise ValueError(f"--trials must be >= 1, got {trials}")
    base = dict(base or {})
    # Bad settings fail before any work; the epoch cap sizes Hyperband.
    epochs = complete_config(space.model, resolve_config(
        space.model, {**base, **space.fixed}))['trainer']['epochs']
    if space.grid:
        trials = min(trials, space.size())
    os.makedirs(folder, exist_ok=True)
    study_name = study_name or f'{space.model}-{dataset}'
    study = optuna.create_study(
        storage=open_storage(storage, folder), study_name=study_name,
        direction='maximize', sampler=TrialSeededSampler(seed),
        pruner=build_pruner(pruner, epochs), load_if_exists=True)
    if space.grid:  # every combination queued once, in grid order
        for params in space.combinations():
            study.enqueue_trial(params, skip_if_exists=True)
    meta = {'model': space.model, 'dataset': dataset, 'study': study_name,
            'storage': storage,  # None: journal.log in the folder
            'trials': trials, 'pruner': str(pruner), 'seed': seed,
            'space': space.params, 'fixed': space.fixed, 'grid': space.grid,
            'base': base}
    write_json(meta, osp.join(folder, 'study.json'))  # this run's budget
    interrupted = fail_interrupted_trials(study, every=fail_running)
    if interrupted:
        log.info("trials %s of an interrupted run marked failed",
                 interrupted)
    requeued = requeue_interrupted(study, folder)
    if requeued:
        log.info("interrupted trials %s queued again: they continue from "
                 "their last epoch", requeued)
    ran = search(study, space, trials, data, base, folder, seed, device,
                 keep_checkpoints, tensorboard)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    summary = {'study': study_name, 'folder': folder, 'ran_here': ran,
               'complete': states.count(TrialState.COMPLETE),
               'pruned': states.count(TrialState.PRUNED),
               'running': states.count(TrialState.RUNNING), 'final': None}
    final, claimed = (osp.join(folder, 'final.json'),
                      osp.join(folder, 'final.claimed'))
    if not osp.exists(final):  # final runs of a worker that is gone
        release_stale_claim(claimed, every=fail_running)
    if osp.exists(final):
        with open(final) as f:
            summary['final'] = json.load(f)
    elif (final_seeds > 0 and summary['running'] == 0
          and summary['complete'] > 0
          and claim(claimed)):
        try:
            summary['final'] = final_runs(study, space, data, base, folder,
                                          final_seeds, device, tensorboard)
        except BaseException:  # the next run continues them
            os.remove(claimed)
            raise
    return summary
