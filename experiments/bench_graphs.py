"""Timings of the graph builders in :mod:`pyg_mmrec.graphs` on CPU.

Usage::

    python experiments/bench_graphs.py [--data-root ../shared/data]
        [--threads N] [--cluster-timeout 120] [--skip-cluster]

* kNN (k=10, cosine, self included) over 7,050 random items, 4096-d and
  384-d: chunked matmul vs torch_cluster's KD-tree (run in a child process
  that is stopped after ``--cluster-timeout`` seconds);
* bipartite normalisations and FREEDOM pruning on Baby (real training
  pairs when ``<data-root>/baby/baby.inter`` exists, else random pairs of
  the same size);
* co-occurrence counts and top-k on Sports (likewise);
* one LightGCN layer forward + backward on Baby.
"""
import argparse
import multiprocessing as mp
import os
import time
import warnings

import numpy as np
import torch
from report import results_file

from pyg_mmrec.graphs import (
    bipartite_adjacency,
    cooccurrence_graph,
    degree_sensitive_pruning,
    knn_graph,
    pruning_weights,
    topk_per_row,
    unique_pairs,
)
from pyg_mmrec.nn import LightGCNConv

warnings.filterwarnings('ignore', message='.*Sparse.*')

SIZES = {  # users, items, training pairs
    'baby': (19445, 7050, 118551),
    'sports': (35598, 18357, 218409),
}


def load_train_pairs(data_root, name):
    path = os.path.join(data_root, name, f'{name}.inter')
    if os.path.exists(path):
        arr = np.loadtxt(path, skiprows=1, dtype=np.int64)
        num_users = int(arr[:, 0].max()) + 1
        num_items = int(arr[:, 1].max()) + 1
        train = torch.from_numpy(arr[arr[:, 2] == 0, :2].T.copy())
        return train, num_users, num_items, 'real'
    num_users, num_items, num_edges = SIZES[name]
    gen = torch.Generator().manual_seed(0)
    pairs = torch.stack([
        torch.randint(num_users, (num_edges, ), generator=gen),
        torch.randint(num_items, (num_edges, ), generator=gen),
    ])
    return pairs, num_users, num_items, 'random'


def timeit(fn, repeat=3):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def features(dim, n=7050, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, dim, generator=gen)  # non-negative, like CNN feats


def _cluster_worker(dim, threads, queue):
    torch.set_num_threads(threads)
    x = features(dim)
    start = time.perf_counter()
    knn_graph(x, 10, method='cluster')
    queue.put(time.perf_counter() - start)


def bench_knn(args):
    print('## kNN, 7,050 items, k=10, cosine, loop=True')
    for dim in (4096, 384):
        x = features(dim)
        t = timeit(lambda: knn_graph(x, 10, method='matmul'), repeat=1)
        print(f'matmul  {dim:5d}-d: {t:8.3f} s')
        a = knn_graph(x, 10, method='matmul')
        if args.skip_cluster:
            continue
        ctx = mp.get_context('spawn')
        queue = ctx.Queue()
        proc = ctx.Process(target=_cluster_worker,
                           args=(dim, args.threads, queue))
        proc.start()
        proc.join(args.cluster_timeout)
        if proc.is_alive():
            proc.terminate()
            proc.join()
            print(f'cluster {dim:5d}-d: > {args.cluster_timeout} s (stopped)')
        else:
            t = queue.get()
            b = knn_graph(x, 10, method='cluster')
            # Rows whose neighbour sets agree (float32 near-ties may swap
            # the k-th neighbour):
            sa = a[0][1].view(-1, 10).sort(dim=1).values
            sb = b[0][1].view(-1, 10).sort(dim=1).values
            same = (sa == sb).all(dim=1).float().mean().item()
            print(f'cluster {dim:5d}-d: {t:8.3f} s  (rows with the same '
                  f'neighbour set as matmul: {same:.2%})')


def bench_bipartite(args):
    pairs, num_users, num_items, kind = load_train_pairs(args.data_root,
                                                         'baby')
    print(f'## Baby ({kind}): {num_users} users, {num_items} items, '
          f'{pairs.size(1)} training pairs')
    for label, kwargs in [
        ('sym, no self-loops', dict()),
        ('sym + self-loops', dict(self_loops=True)),
        ('asym (-0.5, -0.4)',
         dict(normalization='asym', self_loops=True, exponents=(-.5, -.4))),
    ]:
        t = timeit(lambda: bipartite_adjacency(pairs, num_users, num_items,
                                               **kwargs))
        print(f'bipartite_adjacency {label:20s}: {t * 1e3:8.2f} ms')

    pairs = unique_pairs(pairs, num_users, num_items)
    weight = pruning_weights(pairs, num_users, num_items)
    gen = torch.Generator().manual_seed(0)
    t = timeit(lambda: degree_sensitive_pruning(
        pairs, num_users, num_items, 0.2, edge_weight=weight, generator=gen),
        repeat=10)
    print(f'degree_sensitive_pruning keep=0.2 (weights given): '
          f'{t * 1e3:8.2f} ms')
    t = timeit(lambda: degree_sensitive_pruning(
        pairs, num_users, num_items, 0.2, generator=gen), repeat=10)
    print(f'degree_sensitive_pruning keep=0.2 (weights computed): '
          f'{t * 1e3:8.2f} ms')

    adj = bipartite_adjacency(pairs, num_users, num_items)
    conv = LightGCNConv()
    x = torch.randn(num_users + num_items, 64, requires_grad=True)

    def step():
        conv(x, adj).sum().backward()

    t = timeit(step, repeat=5)
    print(f'LightGCNConv forward+backward, d=64: {t * 1e3:8.2f} ms')


def bench_cooccurrence(args):
    pairs, num_users, num_items, kind = load_train_pairs(args.data_root,
                                                         'sports')
    print(f'## Sports ({kind}): {num_users} users, {num_items} items, '
          f'{pairs.size(1)} training pairs')
    for side in ('item', 'user'):
        start = time.perf_counter()
        counts = cooccurrence_graph(pairs, num_users, num_items, side=side)
        t = time.perf_counter() - start
        nnz = counts.values().numel()
        start = time.perf_counter()
        topk_per_row(counts, 10)
        t_topk = time.perf_counter() - start
        print(f'cooccurrence_graph side={side}: {t:6.3f} s, {nnz} entries; '
              f'topk_per_row(k=10): {t_topk:6.3f} s')


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-root',
                        default=os.path.join(root, '..', 'shared', 'data'))
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--cluster-timeout', type=float, default=120.0)
    parser.add_argument('--skip-cluster', action='store_true')
    parser.add_argument('--only', choices=['knn', 'bipartite', 'cooccurrence'])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {args.threads} threads')
    if args.only in (None, 'bipartite'):
        bench_bipartite(args)
    if args.only in (None, 'cooccurrence'):
        bench_cooccurrence(args)
    if args.only in (None, 'knn'):
        bench_knn(args)


if __name__ == '__main__':
    with results_file('bench_graphs.txt'):
        main()
