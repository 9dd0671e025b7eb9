"""The README's TikTok leaderboard, assembled from the result files that
the measuring scripts wrote (nothing is re-run or typed in): every model's
test Recall@20 and NDCG@20 at the best validation epoch (mean ± std over
its seeds), seconds per epoch and peak memory from the same runs (MDMNS:
from its benchmark, whose runs kept no results.json), and the tuned
Recall@20 of the equal-budget studies where one exists.

Usage::

    python experiments/leaderboard.py

Writes ``experiments/results/leaderboard_tiktok.{json,md}``.
"""
import json
import os
import statistics

from report import RESULTS, results_path, write_results

#: (model label, where its runs are): a "file:model" of per-seed results
#: (lists under a model key), a list of run_results folders, or a
#: "protocols:file" (the honest rows of experiments/protocols.py) with its
#: speed source.
SOURCES = [
    ('Pop', 'tiktok_baselines.json:pop'),
    ('LightGCN', 'tiktok_baselines.json:lightgcn'),
    ('VBPR', 'tiktok_baselines.json:vbpr'),
    ('FREEDOM', 'tiktok_baselines.json:freedom'),
    ('BM3', 'tiktok_mmrec_baselines.json:bm3'),
    ('LATTICE', 'tiktok_mmrec_baselines.json:lattice'),
    ('MGCN', 'tiktok_mmrec_baselines.json:mgcn'),
    ('SMORE', 'tiktok_mmrec_baselines.json:smore'),
    ('LGMRec', 'tiktok_mmrec_baselines.json:lgmrec'),
    ('DRAGON', 'tiktok_mmrec_baselines.json:dragon'),
    ('DiffMM', 'protocols:tiktok_diffmm_protocols.json',
     'runs:diffmm-tiktok-seed'),
    ('FMCNS', 'tiktok_fmcns.json:fmcns'),
    ('MDMNS', 'protocols:tiktok_mdmns_protocols.json',
     'bench:bench_mdmns_jemalloc.json'),
    ('REARM', 'runs:rearm-tiktok-seed'),
    ('GenRec-V1', 'protocols:tiktok_genrec_protocols.json',
     'runs:genrec-tiktok-seed'),
    ('MCLN', 'runs:mcln-tiktok-seed'),
]
#: The studies of tune_tiktok.json, by label.
TUNED = {'LightGCN': 'lightgcn', 'FREEDOM': 'freedom', 'BM3': 'bm3',
         'FMCNS': 'fmcns'}


def read(name, missing=None):
    path = os.path.join(RESULTS, name)
    if not os.path.isfile(path):  # not measured (yet): no row
        return missing
    with open(path) as f:
        return json.load(f)


def run_results(prefix):
    folder = os.path.join(RESULTS, 'run_results')
    out = []
    for seed in range(3):
        path = os.path.join(folder, f'{prefix}{seed}', 'results.json')
        if os.path.isfile(path):
            with open(path) as f:
                out.append(json.load(f))
    return out


def metrics_of(source):
    r"""Per-seed test metrics and the runs giving speed and memory."""
    if source.startswith('runs:'):
        runs = run_results(source[5:])
        return [r['test'] for r in runs], runs
    if source.startswith('protocols:'):
        rows = read(source[10:], [])
        return [r['val_selected']['test'] for r in rows], None
    name, model = source.split(':')
    runs = read(name, {}).get(model, [])
    return [r['test'] for r in runs], runs


def speed_of(runs, source):
    if source is not None and source.startswith('bench:'):
        runs = read(source[6:])
    elif source is not None:
        runs = run_results(source[5:])
    times = [r['time_per_epoch'] for r in runs if r.get('time_per_epoch')]
    peaks = [r['peak_memory_mb'] for r in runs if r.get('peak_memory_mb')]
    return times, peaks


def span(values, digits):
    if not values:
        return '-'
    lo, hi = min(values), max(values)
    return (f'{lo:,.{digits}f}' if round(lo, digits) == round(hi, digits)
            else f'{lo:,.{digits}f}-{hi:,.{digits}f}')


def mean_std(values):
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), std


def main():
    tuned = {r['model']: r['final']['test']['recall@20']
             for r in read('tune_tiktok.json')}
    rows, table = [], []
    for label, source, *speed_source in SOURCES:
        tests, runs = metrics_of(source)
        if not tests:
            continue
        recall = mean_std([t['recall@20'] for t in tests])
        ndcg = mean_std([t['ndcg@20'] for t in tests])
        times, peaks = speed_of(runs, speed_source[0] if speed_source
                                else None)
        tune = tuned.get(TUNED.get(label))
        rows.append({'model': label, 'seeds': len(tests),
                     'recall@20': recall, 'ndcg@20': ndcg,
                     'time_per_epoch': times, 'peak_memory_mb': peaks,
                     'tuned_recall@20': tune and (tune['mean'],
                                                  tune['std'])})
        table.append(
            f"| {label} | {recall[0]:.4f} ± {recall[1]:.4f} | "
            f"{ndcg[0]:.4f} ± {ndcg[1]:.4f} | {len(tests)} | "
            f"{span(times, 1)} | {span(peaks, 0)} | " +
            (f"{tune['mean']:.4f} ± {tune['std']:.4f}" if tune else '-') +
            ' |\n')
    markdown = ('| model | Recall@20 | NDCG@20 | seeds | s / epoch | '
                'peak MiB | tuned Recall@20 |\n'
                '|---|---|---|---|---|---|---|\n' + ''.join(table))
    print(markdown)
    write_results(results_path('leaderboard_tiktok'), rows, markdown)


if __name__ == '__main__':
    main()
