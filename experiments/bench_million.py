"""Streaming at 1M items: the memory of full-ranking evaluation and of the
chunked kNN item graph does not grow with the rows processed.

* ``eval``: :meth:`Evaluator.evaluate_embeddings` over 1M items for a
  growing number of evaluated users (64-d random embeddings; every user has
  training, validation and test items), one process per size: peak memory
  is :math:`O(\\text{batch} \\times I)`, whatever the number of users.
* ``knn``: :func:`~pyg_mmrec.graphs.knn_graph` (chunked matmul + top-k) of
  1M 64-d items; the whole graph takes hours at one thread, so the run stops
  after ``--knn-chunks`` blocks of rows (an instrumented top-k counts them)
  and reports the memory then, the time per block and the extrapolated
  total.

Usage::

    python experiments/bench_million.py [--users 2000 8000 32000]

Writes ``experiments/results/million_items.json`` and ``.md``.
"""
import argparse
import json
import subprocess
import sys
import time

from report import read_rows, results_path, write_results


def rss_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS'):
                return int(line.split()[1]) / 1024
    return float('nan')


def eval_row(num_users, num_items, batch_size):
    import numpy as np
    import torch

    from pyg_mmrec.data.hetero import build_hetero_data
    from pyg_mmrec.train import Evaluator
    from pyg_mmrec.train.records import peak_memory_mb
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    per_user = 12  # 10 training, 1 validation, 1 test items
    user = np.repeat(np.arange(num_users), per_user)
    item = rng.integers(0, num_items, user.size)
    keys = np.unique(user * num_items + item)
    user, item = keys // num_items, keys % num_items
    split = np.zeros(keys.size, dtype=np.int64)
    first = np.r_[0, np.flatnonzero(np.diff(user)) + 1]
    split[first], split[first + 1] = 1, 2
    # Most of the 1M items have no interaction: a feature table of
    # num_items rows (one column, 4 MB at 1M) declares the catalogue, as
    # build_hetero_data requires of ids this far from contiguous.
    catalogue = {'id': np.zeros((num_items, 1), dtype=np.float32)}
    data = build_hetero_data(user, item, split, num_users, num_items,
                             features=catalogue)
    gen = torch.Generator().manual_seed(0)
    user_emb = torch.randn(num_users, 64, generator=gen)
    item_emb = torch.randn(num_items, 64, generator=gen)
    evaluator = Evaluator(data, batch_size=batch_size)
    before = peak_memory_mb()
    t0 = time.perf_counter()
    metrics = evaluator.evaluate_embeddings(user_emb, item_emb, 'test')
    seconds = time.perf_counter() - t0
    return {'part': 'eval', 'users': num_users, 'items': num_items,
            'batch_size': batch_size, 'seconds': seconds,
            'peak_before_mb': before, 'peak_memory_mb': peak_memory_mb(),
            'recall@20': metrics['recall@20']}


class Stop(Exception):
    pass


def knn_row(num_items, dim, k, chunks):
    import torch

    from pyg_mmrec.graphs import knn as knn_module
    from pyg_mmrec.train.records import peak_memory_mb
    torch.set_num_threads(1)
    x = torch.randn(num_items, dim, generator=torch.Generator().manual_seed(0))
    base = rss_mb()
    original, state = knn_module._chunk_topk, {'n': 0, 'rows': 0, 't0': 0.0}

    def counted(sim, k_):
        if state['n'] == 0:
            state['t0'] = time.perf_counter()
        state['n'] += 1
        state['rows'] += sim.size(0)
        if state['n'] > chunks:
            raise Stop
        return original(sim, k_)

    knn_module._chunk_topk = counted
    t0 = time.perf_counter()
    try:
        knn_module.knn_graph(x, k, method='matmul')
    except Stop:
        pass
    finally:
        knn_module._chunk_topk = original
    per_chunk = (time.perf_counter() - state['t0']) / chunks
    rows = state['rows'] / state['n']
    return {'part': 'knn', 'items': num_items, 'dim': dim, 'k': k,
            'rows_per_chunk': rows, 'chunks_run': chunks,
            'seconds_per_chunk': per_chunk,
            'extrapolated_seconds': per_chunk * num_items / rows,
            'setup_seconds': state['t0'] - t0,
            'features_mb': x.numel() * 4 / 2**20, 'rss_before_mb': base,
            'peak_memory_mb': peak_memory_mb()}


def to_markdown(rows):
    lines = ['| evaluated users | items | batch | s | peak MiB (before eval) '
             '| peak MiB |', '|---|---|---|---|---|---|']
    for r in rows:
        if r['part'] == 'eval':
            lines.append(f"| {r['users']:,} | {r['items']:,} | "
                         f"{r['batch_size']} | {r['seconds']:.1f} | "
                         f"{r['peak_before_mb']:.0f} | "
                         f"{r['peak_memory_mb']:.0f} |")
    for r in rows:
        if r['part'] == 'knn':
            lines += ['', '| kNN items | dim | k | rows / block | s / block '
                      '| blocks run | extrapolated s | features MiB | RSS '
                      'before MiB | peak MiB |', '|---|---|---|---|---|---|'
                      '---|---|---|---|',
                      f"| {r['items']:,} | {r['dim']} | {r['k']} | "
                      f"{r['rows_per_chunk']:.0f} | "
                      f"{r['seconds_per_chunk']:.3f} | {r['chunks_run']} | "
                      f"{r['extrapolated_seconds']:.0f} | "
                      f"{r['features_mb']:.0f} | {r['rss_before_mb']:.0f} | "
                      f"{r['peak_memory_mb']:.0f} |"]
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--items', type=int, default=1_000_000)
    parser.add_argument('--users', type=int, nargs='+',
                        default=[2000, 8000, 32000])
    parser.add_argument('--batch-size', type=int, default=256)
    parser.add_argument('--knn-chunks', type=int, default=200)
    parser.add_argument('--parts', nargs='+', choices=['eval', 'knn'],
                        default=['eval', 'knn'],
                        help='what to run (rows of the others are kept)')
    parser.add_argument('--out', default=results_path('million_items'),
                        help='update <out>.json and <out>.md')
    parser.add_argument('--worker', nargs='+', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # one row in this process, as JSON
        part, n = args.worker[0], int(args.worker[1])
        row = (eval_row(n, args.items, args.batch_size) if part == 'eval'
               else knn_row(args.items, 64, 10, args.knn_chunks))
        print(json.dumps(row))
        return
    rows = [r for r in read_rows(args.out) if r['part'] not in args.parts]
    jobs = ([('eval', n) for n in args.users] if 'eval' in args.parts
            else []) + ([('knn', 0)] if 'knn' in args.parts else [])
    for part, n in jobs:
        out = subprocess.run(
            [sys.executable, __file__, '--items', str(args.items),
             '--batch-size', str(args.batch_size), '--knn-chunks',
             str(args.knn_chunks), '--worker', part, str(n)],
            capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(to_markdown(rows[-1:]), flush=True)
    rows.sort(key=lambda r: (r['part'], r.get('users', 0)))
    write_results(args.out, rows, to_markdown(rows))
    print(to_markdown(rows))


if __name__ == '__main__':
    main()
