"""The equal-budget leaderboard: each model's ``tune`` study on one dataset
(the same number of trials, epoch cap and pruner for every model) beside
its default settings' 3-seed result.

Usage::

    python -m pyg_mmrec tune --model freedom --dataset tiktok \\
        --data-root ../shared/data --trials 20 --epochs 200 \\
        --output-dir runs/tune-freedom-tiktok
    python experiments/tune_leaderboard.py --studies runs/tune-*-tiktok \\
        --defaults lightgcn=experiments/results/tiktok_baselines.json \\
        freedom=experiments/results/tiktok_baselines.json \\
        --copy-to experiments/results/tune --out tune_tiktok

``--defaults MODEL=FILE`` reads ``experiments/table.py``'s JSON (the runs of
each model's default settings per seed), or the runs' ``results.json``
(a quoted pattern, e.g.
``'experiments/results/run_results/rearm-tiktok-seed*/results.json'``).
``--copy-to`` keeps each study's storage, trial records and final results
(no checkpoints) under that folder. Writes
``experiments/results/<out>.{json,md}`` and the README's shorter table,
``<out>_readme.md``.
"""
import argparse
import glob
import json
import os
import os.path as osp
import shutil
import statistics

from report import _write_text, results_path, write_results

KEEP = ('study.json', 'journal.log', 'final.json', 'best.yaml',
        'trial.json', 'results.json', 'progress.json')


def default_result(path, model, metric):
    r"""Mean, standard deviation (0 for one run) and count of the default
    runs' test :obj:`metric`: ``table.py``'s JSON, one run's
    ``results.json``, or a pattern of them (``run_results/M-seed*/...``)."""
    runs = []
    for name in sorted(glob.glob(path)):
        with open(name) as f:
            loaded = json.load(f)
        runs.extend([loaded] if 'test' in loaded else loaded[model])
    if not runs:
        raise SystemExit(f"--defaults {model}={path}: no such file")
    values = [r['test'][metric] for r in runs]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), std, len(values)


def study_row(folder):
    from pyg_mmrec.tune.report import load_study, trial_rows
    study, meta = load_study(folder)
    rows = trial_rows(study, folder)
    final_path = osp.join(folder, 'final.json')
    final = None
    if osp.exists(final_path):
        with open(final_path) as f:
            final = json.load(f)
    search_cpu = sum(r['cpu_seconds'] or 0 for r in rows)
    final_hours, final_unit = 0.0, 'CPU'
    if final is not None and 'cpu_seconds' in final:
        final_hours = final['cpu_seconds'] / 3600
    elif final is not None:  # older studies: the final runs' wall time
        final_unit = 'wall'
        for run in glob.glob(osp.join(folder, 'final', 'seed*',
                                      'results.json')):
            with open(run) as f:
                r = json.load(f)
            final_hours += r['epochs_run'] * (r['time_per_epoch']
                                              + r['eval_time']) / 3600
    return {'model': meta['model'], 'dataset': meta['dataset'],
            'trials': meta['trials'], 'pruner': meta['pruner'],
            'epochs': {**meta['base'], **meta['fixed']}.get('epochs'),
            'complete': sum(r['state'] == 'complete' for r in rows),
            'pruned': sum(r['state'] == 'pruned' for r in rows),
            'search_cpu_hours': search_cpu / 3600,
            'final_hours': final_hours, 'final_unit': final_unit,
            'best_val': max((r['value'] for r in rows
                             if r['value'] is not None), default=None),
            'final': final}


def copy_study(folder, dest):
    for root, _, files in os.walk(folder):
        for name in files:
            if name in KEEP:
                src = osp.join(root, name)
                out = osp.join(dest, osp.relpath(src, folder))
                os.makedirs(osp.dirname(out), exist_ok=True)
                shutil.copy2(src, out)


def _default_cell(r):
    d = r.get('default')
    if d is None:
        return '-'
    return (f"{d[0]:.4f} ± {d[1]:.4f}" if d[2] > 1 else
            f"{d[0]:.4f} (one seed)")


def _test_cells(final):
    r"""Tuned Recall@20 and NDCG@20 over the final runs' seeds."""
    rec, nd = final['test']['recall@20'], final['test']['ndcg@20']
    return (f"{rec['mean']:.4f} ± {rec['std']:.4f}",
            f"{nd['mean']:.4f} ± {nd['std']:.4f}")


def _cost_cell(r):
    return (f"{r['search_cpu_hours']:.2f} + {r['final_hours']:.2f}"
            + ('' if r['final_unit'] == 'CPU' else ' (wall)'))


def _best_cell(r):
    return '-' if r['best_val'] is None else f"{r['best_val']:.4f}"


def _ran_cell(r):
    return f"{r['complete'] + r['pruned']} / {r['pruned']}"


def to_markdown(rows):
    lines = ['| model | default Recall@20 | tuned Recall@20 (3 seeds) | tuned '
             'NDCG@20 | best validation | trials run / pruned | CPU-hours '
             '(search + final) | best settings |',
             '|---|---|---|---|---|---|---|---|']
    for r in rows:
        final, ran = r['final'], _ran_cell(r)
        if final is None:  # a study still going: how far, spent so far
            tuned = ndcg = 'not yet'
            params = '-'
            ran += f" (of {r['trials']}, in progress)"
        else:
            tuned, ndcg = _test_cells(final)
            params = ', '.join(f'{k} {v:.3g}' if isinstance(v, float)
                               else f'{k} {v}'
                               for k, v in final['params'].items())
        lines.append(
            f"| {r['model']} | {_default_cell(r)} | {tuned} | {ndcg} | "
            f"{_best_cell(r)} | {ran} | {_cost_cell(r)} | {params} |")
    return '\n'.join(lines) + '\n'


#: The README's names of the models.
LABELS = {'lightgcn': 'LightGCN', 'freedom': 'FREEDOM', 'bm3': 'BM3',
          'fmcns': 'FMCNS', 'mdmns': 'MDMNS', 'rearm': 'REARM',
          'genrec': 'GenRec-V1', 'mcln': 'MCLN'}


def to_readme_markdown(rows):
    r"""The README's table: no settings or validation columns; a study
    still going shows its best validation so far and its cost so far."""
    lines = ['| model | default Recall@20 | tuned Recall@20 (3 seeds) | tuned '
             'NDCG@20 | trials run / pruned | CPU-hours (search + final) |',
             '|---|---|---|---|---|---|']
    for r in rows:
        final, ran = r['final'], _ran_cell(r)
        if final is None:
            tuned = f"in progress (best validation so far {_best_cell(r)})"
            ndcg, ran = '-', f"{ran} of {r['trials']}"
            cost = f"{r['search_cpu_hours']:.2f} so far"
        else:
            (tuned, ndcg), cost = _test_cells(final), _cost_cell(r)
        lines.append(f"| {LABELS.get(r['model'], r['model'])} | "
                     f"{_default_cell(r)} | {tuned} | {ndcg} | {ran} | "
                     f"{cost} |")
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--studies', nargs='+', required=True)
    parser.add_argument('--defaults', nargs='*', default=[])
    parser.add_argument('--copy-to', default=None)
    parser.add_argument('--out', default='tune_leaderboard')
    args = parser.parse_args()
    defaults = dict(item.split('=', 1) for item in args.defaults)
    folders = [f for pattern in args.studies for f in sorted(glob.glob(
        pattern)) if osp.isfile(osp.join(f, 'study.json'))]
    rows = []
    for folder in folders:
        row = study_row(folder)
        if row['model'] in defaults:
            row['default'] = default_result(defaults[row['model']],
                                            row['model'], 'recall@20')
        rows.append(row)
        if args.copy_to:
            copy_study(folder, osp.join(
                args.copy_to, f"{row['dataset']}-{row['model']}"))
    write_results(results_path(args.out), rows, to_markdown(rows))
    _write_text(results_path(args.out + '_readme') + '.md',
                to_readme_markdown(rows))
    print(to_markdown(rows))


if __name__ == '__main__':
    main()
