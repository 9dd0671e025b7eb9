"""Accuracy, speed and memory table of finished runs (one ``train`` run per
model and seed, test at the best validation epoch): per model, Recall@20
and NDCG@20 as mean ± std over its runs, the selected epochs, and the
ranges of seconds per epoch, evaluation seconds and peak memory.

Usage::

    python experiments/run_table.py runs/{bm3,lattice,mgcn,smore,lgmrec,\\
dragon}-tiktok-seed[012] --name tiktok_mmrec_baselines

Writes ``experiments/results/<name>.json`` (every run's results without
the per-epoch history, by model) and ``.md`` (the table).
"""
import argparse
import json
import os
import statistics
from collections import defaultdict

from report import results_path, write_results


def load(run_dir):
    with open(os.path.join(run_dir, 'results.json')) as f:
        results = json.load(f)
    results.pop('history', None)
    return results


def spread(values, digits):
    lo, hi = min(values), max(values)
    return f'{lo:.{digits}f}-{hi:.{digits}f}'


def row(model, runs):
    def metric(key):
        values = [r['test'][key] for r in runs]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f'{statistics.mean(values):.4f} ± {std:.4f}'
    return (f"| {model} | {metric('recall@20')} | {metric('ndcg@20')} | "
            f"{', '.join(str(r['best_epoch']) for r in runs)} | "
            f"{spread([r['time_per_epoch'] for r in runs], 1)} | "
            f"{spread([r['eval_time'] for r in runs], 2)} | "
            f"{spread([r['peak_memory_mb'] for r in runs], 0)} |\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('runs', nargs='+')
    parser.add_argument('--name', required=True)
    args = parser.parse_args()
    by_model = defaultdict(list)
    for run_dir in args.runs:
        results = load(run_dir)
        by_model[results['config']['name']].append(results)
    table = ('| model | Recall@20 | NDCG@20 | best epochs | s / epoch | '
             'eval s | peak MiB |\n|---|---|---|---|---|---|---|\n' +
             ''.join(row(m, runs) for m, runs in by_model.items()))
    print(table)
    write_results(results_path(args.name), dict(by_model), table)


if __name__ == '__main__':
    main()
