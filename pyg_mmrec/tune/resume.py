r"""Continuing interrupted work of a study (see :mod:`pyg_mmrec.tune.study`):
a trial whose worker was interrupted (Ctrl-C, a killed process, a machine
that went away) is queued again with the same settings and continues from
its last epoch's checkpoint, and the final runs continue from theirs, so
that a search whose trials take hours loses at most one epoch per worker
to an interruption. Each run's CPU seconds are kept in its
:obj:`progress.json` and summed over the processes that ran it."""
import logging
import os
import os.path as osp
import socket
import time
from typing import Any, Dict, List, Optional

from ..train.checkpoint import load_checkpoint
from ..train.records import write_json

log = logging.getLogger('pyg_mmrec')

#: The files of a run that a continued run takes over.
CHECKPOINTS = ('last.pt', 'best.pt', 'progress.json')


def worker_id() -> str:
    r"""This process, as :obj:`"host:pid"`."""
    return f'{socket.gethostname()}:{os.getpid()}'


def worker_alive(worker: str) -> bool:
    r"""Whether the process :obj:`"host:pid"` may still be running: a
    process on another machine is not ours to judge (:obj:`True`)."""
    host, _, pid = worker.rpartition(':')
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def trial_dir(folder: str, number: int) -> str:
    r"""The run folder of trial :obj:`number` of the study in
    :obj:`folder`."""
    return osp.join(folder, 'trials', f'trial-{number:04d}')


def claim(path: str) -> bool:
    r"""Creates :obj:`path` holding this process's :func:`worker_id` if it
    does not exist (atomically); whether this process did."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(fd, 'w') as f:
        f.write(worker_id())
    return True


def release_stale_claim(path: str, every: bool = False) -> bool:
    r"""Removes the claim :obj:`path` if its worker is gone (on this
    machine), or whoever holds it with :obj:`every` (a worker on a machine
    that is gone); whether it did. A claim without an owner (written
    before claims named theirs) counts as gone."""
    try:
        with open(path) as f:
            owner = f.read().strip()
    except FileNotFoundError:
        return False
    if not every and owner and worker_alive(owner):
        return False
    os.remove(path)
    log.info("%s: the claim of %s, which is gone, released", path,
             owner or 'an earlier run')
    return True


def requeue_interrupted(study, folder: str) -> List[int]:
    r"""Queues again, with the same settings, each failed trial of
    :obj:`study` that was interrupted after at least one epoch (its run
    folder holds :obj:`last.pt`; not one whose settings were rejected or
    that was skipped at the budget), once: the folder's
    :obj:`resume.claimed` says it was. The queued trial carries the user
    attribute :obj:`resumes` (the interrupted trial's number), and
    :func:`continue_from` moves the checkpoint over. Returns the numbers
    queued again."""
    from optuna.trial import TrialState
    queued = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL, )):
        attrs = t.user_attrs
        if 'rejected' in attrs or 'skipped' in attrs:
            continue
        old = trial_dir(folder, t.number)
        if not osp.isfile(osp.join(old, 'last.pt')):
            continue
        if not claim(osp.join(old, 'resume.claimed')):
            continue  # already queued again (by this or another worker)
        study.enqueue_trial(t.params, user_attrs={'resumes': t.number})
        queued.append(t.number)
    return queued


def continue_from(old: str, run_dir: str, record: Dict[str, Any],
                  metric: str) -> Optional[List[Dict[str, Any]]]:
    r"""Moves the checkpoints of the interrupted run in :obj:`old` into
    :obj:`run_dir` and returns the epochs it recorded (their validation
    :obj:`metric` is reported again to the new trial); :obj:`None`, with a
    warning, if there is no checkpoint or it was written with other
    settings than :obj:`record` (the trial then starts afresh)."""
    last = osp.join(old, 'last.pt')
    if not osp.isfile(last):
        log.warning("%s: no checkpoint to continue from; the trial starts "
                    "at epoch 1", old)
        return None
    try:
        state = load_checkpoint(last, keys=('history', 'config'))
    except ValueError as e:
        log.warning("%s; the trial starts at epoch 1", e)
        return None
    if state['config'] != record:
        log.warning("%s was written with other settings; the trial starts "
                    "at epoch 1", last)
        return None
    os.makedirs(run_dir, exist_ok=True)
    for name in CHECKPOINTS:
        if osp.exists(osp.join(old, name)):
            os.replace(osp.join(old, name), osp.join(run_dir, name))
    return [r for r in state['history'] if metric in r.get('val', {})]


def cpu_seconds_before(run_dir: str,
                       history: Optional[List[Dict[str, Any]]] = None
                       ) -> float:
    r"""CPU seconds already spent on the run in :obj:`run_dir` by earlier
    processes (its :obj:`progress.json`); for a run from before progress
    files, the wall seconds of its recorded epochs (:obj:`history`'s
    training and evaluation times: one thread, close to its CPU time)."""
    path = osp.join(run_dir, 'progress.json')
    if osp.isfile(path):
        import json
        with open(path) as f:
            return float(json.load(f)['cpu_seconds'])
    return sum(r.get('train_time', 0.0) + r.get('eval_time', 0.0)
               for r in history or [])


class CpuProgress:
    r"""A trainer callback that writes :obj:`<run_dir>/progress.json` after
    every epoch: the epoch and the run's CPU seconds so far, those of the
    earlier processes of a continued run included.

    Args:
        run_dir (str): The run folder.
        continued (list, optional): The epochs an earlier process ran
            (:func:`continue_from`); :obj:`None` for a new run. Their CPU
            seconds are :func:`cpu_seconds_before`'s.
    """
    def __init__(self, run_dir: str,
                 continued: Optional[List[Dict[str, Any]]] = None):
        self.path = osp.join(run_dir, 'progress.json')
        self.before = (0.0 if continued is None else
                       cpu_seconds_before(run_dir, continued))
        self.start = time.process_time()

    @property
    def cpu_seconds(self) -> float:
        r"""The run's CPU seconds so far."""
        return self.before + time.process_time() - self.start

    def __call__(self, trainer, record) -> None:
        write_json({'epoch': record['epoch'],
                    'cpu_seconds': self.cpu_seconds}, self.path)

