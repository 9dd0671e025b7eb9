"""MCLN's full-ranking scorings on the same trained weights: the attention
restricted to the item itself (``diagonal``) against fixed seeded catalogue
chunks of several sizes and seeds (``chunks``), validation and test
Recall/NDCG@20. Training does not depend on the scoring (the same seed gives
the same weights), so one run's best checkpoint compares them all.

    python experiments/mcln_scoring.py /work/runs/mcln-chunks-tiktok-seed0 \
        --data-root ../shared/data \
        --output experiments/results/tiktok_mcln_scoring
"""
import argparse
import os

import torch
from report import write_results

from pyg_mmrec.recommend import load_run_model
from pyg_mmrec.train import Evaluator

#: (scoring, chunk size, chunk seed)
SETTINGS = [('diagonal', None, None), ('chunks', 25, 0), ('chunks', 100, 0),
            ('chunks', 100, 1), ('chunks', 100, 2), ('chunks', 400, 0),
            ('chunks', 2048, 0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('run_dir')
    parser.add_argument('--data-root', default=None)
    parser.add_argument('--output', default=None,
                        help='write <output>.json and <output>.md')
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    model, data, config = load_run_model(args.run_dir, args.data_root)
    evaluator = Evaluator(data)
    rows = []
    for scoring, size, seed in SETTINGS:
        model.scoring = scoring
        if size is not None:
            model.chunk_size = size
            model.chunk_order = torch.randperm(
                model.num_items, generator=torch.Generator().manual_seed(seed))
        model.eval()  # drops the cached embeddings: re-encoded below
        val = evaluator.evaluate(model.score, 'val')
        test = evaluator.evaluate(model.score, 'test')
        rows.append({'scoring': scoring, 'chunk_size': size,
                     'chunk_seed': seed,
                     **{f'val_{m}@20': val[f'{m}@20']
                        for m in ('recall', 'ndcg')},
                     **{f'test_{m}@20': test[f'{m}@20']
                        for m in ('recall', 'ndcg')}})
        print(' | '.join(f'{k} {v:.4f}' if isinstance(v, float) else
                         f'{k} {v}' for k, v in rows[-1].items()), flush=True)
    if args.output:
        write_results(args.output, {'run': args.run_dir, 'config': config,
                                    'rows': rows},
                      to_markdown(args.run_dir, config['seed'], rows))


def to_markdown(run_dir, seed, rows) -> str:
    r"""The table of the scorings' validation and test metrics."""
    lines = [f'MCLN scorings on the best weights of {run_dir} (seed {seed})',
             '', '| scoring | chunk size | chunk seed | val R@20 | val N@20 | '
             'test R@20 | test N@20 |', '|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(
            f"| {r['scoring']} | {r['chunk_size'] or '-'} | "
            f"{'-' if r['chunk_seed'] is None else r['chunk_seed']} | "
            f"{r['val_recall@20']:.4f} | {r['val_ndcg@20']:.4f} | "
            f"{r['test_recall@20']:.4f} | {r['test_ndcg@20']:.4f} |")
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    main()
