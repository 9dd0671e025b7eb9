"""Time and peak memory of REARM's homography graphs
(:func:`pyg_mmrec.graphs.homography_graphs`) on a synthetic graph of a
given size, part by part: co-occurrence top-k graphs, users' interest
features, the feature kNN graphs of both sides and the mixtures.

Usage::

    python experiments/bench_homography.py --label clothing-size \\
        --users 39387 --items 23033 --interactions 280000 \\
        --features image=4096 text=384 [--threads 1]

The peak is the process's resident peak (``ru_maxrss``) after the synthetic
data is built and after the graphs, so both are reported. Appends a row to
``experiments/results/bench_homography.json`` and ``.md``.
"""
import argparse
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args):
    import torch

    from pyg_mmrec.data import make_synthetic
    from pyg_mmrec.experiment import parse_settings
    from pyg_mmrec.graphs import train_graph
    from pyg_mmrec.graphs.homography import (cooccurrence_topk_graph,
                                             interest_features,
                                             similarity_graph)
    from pyg_mmrec.graphs.sparse import weighted_sum

    torch.set_num_threads(args.threads)
    features = parse_settings(args.features, '--features')
    data = make_synthetic(num_users=args.users, num_items=args.items,
                          mean_interactions=args.interactions / args.users,
                          modalities=features, seed=0)
    graph = train_graph(data)
    x = {m: data['item'][f'x_{m}'] for m in features}
    rss_data = rss_mib()
    times = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - t0
        print(f'{name}: {times[name]:.1f} s', flush=True)
        return out

    gen = torch.Generator().manual_seed(0)
    co_u = timed('cooccurrence_user', lambda: cooccurrence_topk_graph(
        graph, 'user', args.user_k, gen))
    co_i = timed('cooccurrence_item', lambda: cooccurrence_topk_graph(
        graph, 'item', args.item_k, gen))
    interest = timed('interest_features', lambda: {
        m: interest_features(graph, v) for m, v in x.items()})
    s_u = timed('knn_user', lambda: similarity_graph(interest, args.user_k,
                                                     0.2))
    s_i = timed('knn_item', lambda: similarity_graph(x, args.item_k, 0.0))
    timed('mixtures', lambda: (weighted_sum([co_u, s_u], [0.4, 0.6]),
                               weighted_sum([co_i, s_i], [0.2, 0.8])))
    row = {'label': args.label, 'users': args.users, 'items': args.items,
           'train_interactions': graph.edge_index.size(1), 'features': features,
           'threads': args.threads, 'times': times,
           'total_time': sum(times.values()),
           'peak_rss_after_data_mib': rss_data,
           'peak_rss_after_graphs_mib': rss_mib()}
    print(json.dumps(row, indent=1))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--label', default='clothing-size')
    parser.add_argument('--users', type=int, default=39387)
    parser.add_argument('--items', type=int, default=23033)
    parser.add_argument('--interactions', type=int, default=280000)
    parser.add_argument('--features', nargs='+',
                        default=['image=4096', 'text=384'])
    parser.add_argument('--user-k', type=int, default=40)
    parser.add_argument('--item-k', type=int, default=10)
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args()
    row = run(args)
    out = os.path.join(HERE, 'results', 'bench_homography')
    rows = []
    if os.path.exists(out + '.json'):
        with open(out + '.json') as f:
            rows = json.load(f)
    rows.append(row)
    with open(out + '.json', 'w') as f:
        json.dump(rows, f, indent=1)
    with open(out + '.md', 'w') as f:
        f.write('| graph | threads | co-occ. u/i (s) | interest (s) | kNN '
                'user (s) | kNN item (s) | total (s) | peak RSS data / after '
                '(MiB) |\n|---|---|---|---|---|---|---|---|\n')
        for r in rows:
            t = r['times']
            f.write(f"| {r['label']} ({r['users']}u/{r['items']}i/"
                    f"{r['train_interactions']} train) | {r['threads']} | "
                    f"{t['cooccurrence_user']:.1f} / "
                    f"{t['cooccurrence_item']:.1f} | "
                    f"{t['interest_features']:.1f} | {t['knn_user']:.1f} | "
                    f"{t['knn_item']:.1f} | {r['total_time']:.1f} | "
                    f"{r['peak_rss_after_data_mib']:.0f} / "
                    f"{r['peak_rss_after_graphs_mib']:.0f} |\n")


if __name__ == '__main__':
    main()
