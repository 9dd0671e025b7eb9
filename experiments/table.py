"""Accuracy table: each model trained to early stopping on one dataset with
several seeds; mean and std of the test metrics at the best validation
epoch.

Usage::

    python experiments/table.py --dataset tiktok \
        --models pop lightgcn vbpr freedom --seeds 0 1 2 \
        [--config experiments/configs/tiktok.yaml] [--data-root ../shared/data]

Writes ``experiments/results/<dataset>_<tag>.json`` (every run's results
without the per-epoch history) and ``.md`` (the table, formatted by
:mod:`pyg_mmrec.report`; ``python -m pyg_mmrec report`` makes the same
table, with curves and bar charts, from run directories).
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))

from pyg_mmrec.data import load_dataset  # noqa: E402
from pyg_mmrec.config import load_config, parse_settings  # noqa: E402
from pyg_mmrec.experiment import run_experiment  # noqa: E402
from pyg_mmrec.report import format_markdown, summarise  # noqa: E402


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
    runs = {}
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
    out = os.path.join(HERE, 'results', f'{args.dataset}_{args.tag}')
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + '.json', 'w') as f:
        json.dump(runs, f, indent=1)
    table = format_markdown(summarise([r for rs in runs.values() for r in rs]))
    with open(out + '.md', 'w') as f:
        f.write(table)
    print(table)


if __name__ == '__main__':
    main()
