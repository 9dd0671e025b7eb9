r"""The report of a study folder (see :mod:`pyg_mmrec.tune.study`): the
trials table (settings, validation metric, epochs, CPU time, state), the
best-so-far curve and the parameter importances (PNG), and the final runs'
test metrics when they are done.

From the command line::

    python -m pyg_mmrec report runs/tune-freedom-tiktok --output report
"""
import json
import os
import os.path as osp
from typing import Any, Dict, List, Mapping, Optional

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..train.records import write_json
from .resume import trial_dir
from .study import open_storage


def is_study(folder: str) -> bool:
    r"""Whether :obj:`folder` is a study folder (it has :obj:`study.json`)."""
    return osp.isfile(osp.join(folder, 'study.json'))


def load_study(folder: str):
    r"""The study of :obj:`folder` and its :obj:`study.json`."""
    import optuna
    with open(osp.join(folder, 'study.json')) as f:
        meta = json.load(f)
    storage = meta['storage']
    study = optuna.load_study(study_name=meta['study'],
                              storage=open_storage(storage, folder))
    return study, meta


def trial_rows(study, folder: Optional[str] = None
               ) -> List[Dict[str, Any]]:
    r"""One row per trial: number, state, settings, validation metric,
    epochs run, CPU seconds (of every process that ran it), whether its
    training diverged, and the trial it continues (see
    :mod:`~pyg_mmrec.tune.resume`). With the study's :obj:`folder`, a
    running trial's epochs and CPU seconds so far come from its
    :obj:`progress.json`."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {'number': t.number, 'state': t.state.name.lower(),
               'params': dict(t.params), 'value': t.value,
               'last_reported': (t.intermediate_values[
                   max(t.intermediate_values)]
                   if t.intermediate_values else None),
               'epochs_run': t.user_attrs.get('epochs_run'),
               'cpu_seconds': t.user_attrs.get('cpu_seconds'),
               'skipped': t.user_attrs.get('skipped'),
               'continues': t.user_attrs.get('resumes'),
               'diverged': t.user_attrs.get('diverged')}
        progress = (None if folder is None or row['state'] != 'running'
                    else osp.join(trial_dir(folder, t.number),
                                  'progress.json'))
        if progress is not None and osp.isfile(progress):
            with open(progress) as f:
                so_far = json.load(f)
            row['epochs_run'] = so_far['epoch']
            row['cpu_seconds'] = so_far['cpu_seconds']
        rows.append(row)
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:.4g}'
    return str(value)


def format_trials(rows: List[Mapping[str, Any]], metric: str) -> str:
    r"""The trials as a Markdown table (the best complete trial in
    bold)."""
    keys = sorted({k for r in rows for k in r['params']})
    done = [r for r in rows if r['value'] is not None]
    best = max(done, key=lambda r: r['value'])['number'] if done else None
    lines = [f"| trial | state | validation {metric} | epochs | CPU s | "
             + ' | '.join(keys) + ' |',
             '|' + '---|' * (5 + len(keys))]
    for r in rows:
        value = r['value'] if r['value'] is not None else r['last_reported']
        cell = _fmt(value)
        if r['state'] == 'pruned' and value is not None:
            cell += ' (at pruning)'
        if r['number'] == best:
            cell = f'**{cell}**'
        cpu, state = r['cpu_seconds'], r['state']
        if r.get('continues') is not None:
            state += f" (continues {r['continues']})"
        if r.get('diverged'):
            state += ' (diverged)'
        lines.append(f"| {r['number']} | {state} | {cell} | "
                     f"{_fmt(r['epochs_run'])} | "
                     f"{'-' if cpu is None else f'{cpu:.0f}'} | "
                     + ' | '.join(_fmt(r['params'].get(k)) for k in keys)
                     + ' |')
    return '\n'.join(lines) + '\n'


def _save(fig: Figure, path: str) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)


def plot_best_so_far(rows: List[Mapping[str, Any]], metric: str,
                     path: str) -> None:
    r"""Each complete trial's validation metric and the best so far, by
    trial number."""
    done = [r for r in rows if r['value'] is not None]
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    xs = [r['number'] for r in done]
    ys = [r['value'] for r in done]
    best, running = [], float('-inf')
    for y in ys:
        running = max(running, y)
        best.append(running)
    ax.scatter(xs, ys, s=12, label='trial')
    ax.step(xs, best, where='post', color='C1', label='best so far')
    ax.set_xlabel('trial')
    ax.set_ylabel(f'validation {metric}')
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_importance(importances: Mapping[str, float], path: str) -> None:
    r"""Horizontal bars of the parameter importances."""
    fig = Figure(figsize=(6, 0.5 + 0.4 * max(len(importances), 1)))
    ax = fig.add_subplot()
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel('importance (fANOVA, complete trials)')
    fig.tight_layout()
    _save(fig, path)


def write_study_report(folder: str, output: str) -> Dict[str, Any]:
    r"""Writes :obj:`trials.md`, :obj:`study_report.json`,
    :obj:`best_so_far.png` and (with two or more complete trials and a
    searched parameter that varied) :obj:`importance.png` for the study in
    :obj:`folder` into :obj:`output`; returns the report."""
    import optuna
    from optuna.trial import TrialState
    study, meta = load_study(folder)
    rows = trial_rows(study, folder)
    metric = 'recall@20'
    for r in rows:
        trial_json = osp.join(folder, 'trials', f"trial-{r['number']:04d}",
                              'trial.json')
        if osp.isfile(trial_json):
            with open(trial_json) as f:
                metric = json.load(f).get('metric', metric)
            break
    os.makedirs(output, exist_ok=True)
    files = ['trials.md', 'study_report.json', 'best_so_far.png']
    plot_best_so_far(rows, metric, osp.join(output, 'best_so_far.png'))
    complete = study.get_trials(deepcopy=False,
                                states=(TrialState.COMPLETE, ))
    importances = {}
    if len(complete) >= 2:
        try:
            importances = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(
                    seed=0))
        except (RuntimeError, ValueError):  # no parameter varied
            importances = {}
    if importances:
        plot_importance(importances, osp.join(output, 'importance.png'))
        files.append('importance.png')
    final = None
    if osp.isfile(osp.join(folder, 'final.json')):
        with open(osp.join(folder, 'final.json')) as f:
            final = json.load(f)
    text = (f"# Study {meta['study']}: {meta['model']} on {meta['dataset']}"
            f"\n\n{len(complete)} complete, "
            f"{sum(r['state'] == 'pruned' for r in rows)} pruned of "
            f"{meta['trials']} trials (pruner {meta['pruner']}); selected "
            f"on validation {metric}, no test metric computed during the "
            f"search.\n\n" + format_trials(rows, metric))
    if final is not None:
        test = final['test'][final['metric']]
        text += (f"\nBest trial {final['best_trial']} re-trained with "
                 f"{final['seeds']} seeds: test {final['metric']} "
                 f"{test['mean']:.4f} ± {test['std']:.4f}.\n")
    with open(osp.join(output, 'trials.md'), 'w') as f:
        f.write(text)
    report = {'study': meta, 'metric': metric, 'trials': rows,
              'importances': importances, 'final': final, 'files': files,
              'text': text}
    write_json(report, osp.join(output, 'study_report.json'))
    return report
