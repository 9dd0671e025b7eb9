"""Accuracy table: each model trained to early stopping on one dataset with
several seeds; mean and std of the test metrics at the best validation
epoch.

Usage::

    python experiments/table.py --dataset tiktok \
        --models pop lightgcn vbpr freedom --seeds 0 1 2 \
        [--config experiments/configs/tiktok.yaml] [--data-root ../shared/data]

Writes ``experiments/results/<dataset>_<tag>.json`` (every run's results
without the per-epoch history) and ``.md`` (the table).
"""
import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))

from pyg_mmrec.data import load_dataset  # noqa: E402
from pyg_mmrec.experiment import (load_config, parse_settings,  # noqa: E402
                                  run_experiment)

METRICS = ('recall@20', 'ndcg@20')


def summarise(runs):
    row = {}
    for m in METRICS:
        values = [r['test'][m] for r in runs]
        row[m] = (statistics.mean(values),
                  statistics.stdev(values) if len(values) > 1 else 0.0)
    row['best_epoch'] = [r['best_epoch'] for r in runs]
    row['time_per_epoch'] = statistics.mean(r['time_per_epoch'] for r in runs)
    return row


def to_markdown(dataset, rows, seeds):
    lines = [f"{dataset}, {len(seeds)} seeds, test metrics at the best "
             f"validation epoch (mean ± std)", '',
             '| model | Recall@20 | NDCG@20 | best epochs | s / epoch |',
             '|---|---|---|---|---|']
    for model, row in rows.items():
        cells = ' | '.join(f"{row[m][0]:.4f} ± {row[m][1]:.4f}" for m in METRICS)
        lines.append(f"| {model} | {cells} | "
                     f"{', '.join(map(str, row['best_epoch']))} | "
                     f"{row['time_per_epoch']:.2f} |")
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dataset', required=True)
    parser.add_argument('--models', nargs='+', required=True)
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--config', default=None)
    parser.add_argument('--data-root', default=os.environ.get(
        'PYG_MMREC_DATA', os.path.join(HERE, '..', '..', 'shared', 'data')))
    parser.add_argument('--tag', default='baselines')
    parser.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE',
                        help='extra settings for every model')
    args = parser.parse_args()

    extra = parse_settings(args.set)
    data = load_dataset(args.dataset, root=args.data_root)
    runs, rows = {}, {}
    for model in args.models:
        config = load_config(args.config, model) if args.config else {}
        config.update(extra)
        runs[model] = []
        for seed in args.seeds:
            res = run_experiment(model, args.dataset, config=config, seed=seed,
                                 data=data, progress=False)
            res.pop('history')
            runs[model].append(res)
            print(f"{model} seed {seed}: best epoch {res['best_epoch']} "
                  f"test recall@20 {res['test']['recall@20']:.4f} ndcg@20 "
                  f"{res['test']['ndcg@20']:.4f}", flush=True)
        rows[model] = summarise(runs[model])
    out = os.path.join(HERE, 'results', f'{args.dataset}_{args.tag}')
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + '.json', 'w') as f:
        json.dump(runs, f, indent=1)
    table = to_markdown(args.dataset, rows, args.seeds)
    with open(out + '.md', 'w') as f:
        f.write(table)
    print(table)


if __name__ == '__main__':
    main()
