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
import os

from pyg_mmrec.config import load_config, parse_settings
from pyg_mmrec.data import load_dataset
from pyg_mmrec.experiment import run_experiment
from pyg_mmrec.report import format_markdown, summarise

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    # Imported here: the tests load this file without experiments/ on the
    # path.
    from report import results_path, write_results

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
    table = format_markdown(summarise([r for rs in runs.values() for r in rs]))
    write_results(results_path(f'{args.dataset}_{args.tag}'), runs, table)
    print(table)


if __name__ == '__main__':
    main()
