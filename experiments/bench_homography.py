"""Time and peak memory of REARM's homography graphs
(:func:`pyg_mmrec.graphs.homography_graphs`) on a synthetic graph of a
given size, part by part: co-occurrence top-k graphs, users' interest
features, the feature kNN graphs of both sides and the mixtures.

Usage::

    python experiments/bench_homography.py --label clothing-size \\
        --users 39387 --items 23033 --interactions 280000 \\
        --features image=4096 text=384 [--threads 1] [--max-dim 256]
    python experiments/bench_homography.py --dataset baby \\
        --data-root ../shared/data --max-dim 256

``--max-dim`` searches the kNN neighbours of wider features in a principal
projection (:func:`pyg_mmrec.graphs.knn_graph`); the recall of those
neighbours against the exact ones is measured on ``--recall-sample`` query
rows per side and modality (exact top-k of those rows by a direct product).

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


def neighbour_recall(x, k, max_dim, sample, seed=0):
    r"""Mean fraction of the exact cosine top-(k - 1) neighbours (self
    excluded) of :obj:`sample` random rows found by the projected search of
    :func:`~pyg_mmrec.graphs.knn_graph` (same projection, same rule)."""
    import torch

    from pyg_mmrec.graphs import principal_projection
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randperm(x.size(0), generator=gen)[:sample]

    def top(z):
        z = torch.nn.functional.normalize(z, dim=-1)
        sim = z[rows] @ z.t()
        sim[torch.arange(rows.numel()), rows] = float('-inf')
        return sim.topk(k - 1, dim=1)[1]

    unit = torch.nn.functional.normalize(x, dim=-1)
    exact, approx = top(unit), top(principal_projection(unit, max_dim))
    return (approx[:, :, None] == exact[:, None]).any(-1).float().mean().item()


def run(args):
    import torch

    from pyg_mmrec.data import load_dataset, make_synthetic
    from pyg_mmrec.data.hetero import item_features
    from pyg_mmrec.experiment import parse_settings
    from pyg_mmrec.graphs import train_graph
    from pyg_mmrec.graphs.homography import (cooccurrence_topk_graph,
                                             interest_features,
                                             similarity_graph)
    from pyg_mmrec.graphs.sparse import weighted_sum

    torch.set_num_threads(args.threads)
    if args.dataset:
        data = load_dataset(args.dataset, root=args.data_root)
        features = {m: v.size(1) for m, v in item_features(data).items()}
        args.label = args.dataset
    else:
        features = parse_settings(args.features, '--features')
        data = make_synthetic(num_users=args.users, num_items=args.items,
                              mean_interactions=args.interactions /
                              args.users, modalities=features, seed=0)
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
    s_u = timed('knn_user', lambda: similarity_graph(
        interest, args.user_k, 0.2, max_dim=args.max_dim))
    s_i = timed('knn_item', lambda: similarity_graph(
        x, args.item_k, 0.0, max_dim=args.max_dim))
    timed('mixtures', lambda: (weighted_sum([co_u, s_u], [0.4, 0.6]),
                               weighted_sum([co_i, s_i], [0.2, 0.8])))
    peak = rss_mib()
    recall = {}
    if args.max_dim is not None:
        for side, feats, k in (('user', interest, args.user_k),
                               ('item', x, args.item_k)):
            for m, v in feats.items():
                if v.size(1) > args.max_dim:
                    recall[f'{side}_{m}'] = neighbour_recall(
                        v, k, args.max_dim, args.recall_sample)
                    print(f'recall {side} {m}: {recall[f"{side}_{m}"]:.3f}')
    row = {'label': args.label, 'users': data['user'].num_nodes,
           'items': data['item'].num_nodes,
           'train_interactions': graph.edge_index.size(1), 'features': features,
           'threads': args.threads, 'max_dim': args.max_dim,
           'neighbour_recall': recall, 'times': times,
           'total_time': sum(times.values()),
           'peak_rss_after_data_mib': rss_data,
           'peak_rss_after_graphs_mib': peak}
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
    parser.add_argument('--max-dim', type=int, default=None)
    parser.add_argument('--recall-sample', type=int, default=2000)
    parser.add_argument('--dataset', default=None,
                        help='a real dataset instead of the synthetic graph')
    parser.add_argument('--data-root', default=None)
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
        f.write('| graph | threads | kNN max dim | co-occ. u/i (s) | '
                'interest (s) | kNN user (s) | kNN item (s) | total (s) | '
                'peak RSS data / after (MiB) | neighbour recall vs exact |\n'
                '|---|---|---|---|---|---|---|---|---|---|\n')
        for r in rows:
            t = r['times']
            recall = ', '.join(f'{k} {v:.3f}' for k, v in
                               r.get('neighbour_recall', {}).items()) or '-'
            f.write(f"| {r['label']} ({r['users']}u/{r['items']}i/"
                    f"{r['train_interactions']} train) | {r['threads']} | "
                    f"{r.get('max_dim') or 'exact'} | "
                    f"{t['cooccurrence_user']:.1f} / "
                    f"{t['cooccurrence_item']:.1f} | "
                    f"{t['interest_features']:.1f} | {t['knn_user']:.1f} | "
                    f"{t['knn_item']:.1f} | {r['total_time']:.1f} | "
                    f"{r['peak_rss_after_data_mib']:.0f} / "
                    f"{r['peak_rss_after_graphs_mib']:.0f} | {recall} |\n")


if __name__ == '__main__':
    main()
