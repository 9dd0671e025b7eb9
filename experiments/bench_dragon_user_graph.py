"""Time and peak memory of DRAGON's user co-occurrence graph built on the
fly (:class:`pyg_mmrec.models.DRAGON`): every user's top-k co-neighbours by
shared training items from the sparse product R Rᵀ
(:func:`pyg_mmrec.graphs.cooccurrence_topk`), then one epoch's slot
padding (:func:`pyg_mmrec.graphs.urn_padded_slots`) and the softmax-weighted
sparse [U, U] matrix the model multiplies by. MMRec's offline script holds a
dense U x U float matrix (Clothing: 39,387² x 4 B = 6.2 GB) filled by an
O(U²) Python loop; the row records that matrix's size beside the build's
peak.

Usage::

    python experiments/bench_dragon_user_graph.py            # Clothing size
    python experiments/bench_dragon_user_graph.py --dataset sports \\
        --data-root ../shared/data

Memory as :mod:`bench_homography` measures it (the resident high-water
mark reset after the data is built). Appends a row to
``experiments/results/bench_dragon_user_graph.json`` and ``.md``.
"""
import argparse
import json

from bench_homography import reset_peak, rss_mib
from report import Clock, read_rows, results_path, write_results


def run(args):
    import torch

    from pyg_mmrec.data import load_dataset, make_synthetic
    from pyg_mmrec.graphs import (
        cooccurrence_topk,
        to_sparse_csr,
        train_graph,
        urn_padded_slots,
    )

    torch.set_num_threads(args.threads)
    if args.dataset:
        data = load_dataset(args.dataset, root=args.data_root)
        label = args.dataset
    else:
        data = make_synthetic(num_users=args.users, num_items=args.items,
                              mean_interactions=args.interactions /
                              args.users, modalities={}, seed=0)
        label = args.label
    graph = train_graph(data)
    n = graph.num_users
    rss_start = reset_peak()
    times = {}
    with Clock() as clock:
        ranked, counts = cooccurrence_topk(graph, 'user', args.k,
                                           cap=args.cap)
    times['top_k'] = (clock.wall, clock.cpu)
    with Clock() as clock:
        neighbors, slot_counts = urn_padded_slots(
            ranked, counts, n, args.k,
            generator=torch.Generator().manual_seed(0))
        has = neighbors[:, 0] >= 0
        weight = torch.softmax(slot_counts[has], dim=1)
        row = has.nonzero().view(-1).repeat_interleave(args.k)
        adj = to_sparse_csr(torch.stack([row, neighbors[has].reshape(-1)]),
                            weight.reshape(-1).float(), (n, n))
    times['epoch_padding_and_matrix'] = (clock.wall, clock.cpu)
    peak = rss_mib()
    have = torch.bincount(ranked[0], minlength=n)
    result = {
        'label': label, 'users': n, 'items': graph.num_items,
        'train_interactions': graph.edge_index.size(1), 'k': args.k,
        'cap': args.cap, 'threads': args.threads,
        'users_with_k': int((have >= args.k).sum()),
        'users_padded': int(((have > 0) & (have < args.k)).sum()),
        'users_without': int((have == 0).sum()),
        'graph_nnz': int(adj._nnz()),
        'times_s': {k: v[0] for k, v in times.items()},
        'cpu_s': {k: v[1] for k, v in times.items()},
        'peak_rss_mib': peak, 'rss_before_build_mib': rss_start,
        'dense_uxu_float32_mib': n * n * 4 / 2**20,
    }
    print(json.dumps(result, indent=1))
    return result


def to_markdown(rows):
    out = ('| graph | users | train interactions | k | top-k (s) | epoch '
           'padding + matrix (s) | peak RSS / before (MiB) | dense U x U '
           'float32 (MiB) | users with k / padded / none |\n'
           '|---|---|---|---|---|---|---|---|---|\n')
    for r in rows:
        t = r['times_s']
        before = r['rss_before_build_mib']
        out += (f"| {r['label']} | {r['users']:,} | "
                f"{r['train_interactions']:,} | {r['k']} | "
                f"{t['top_k']:.2f} | {t['epoch_padding_and_matrix']:.2f} | "
                f"{r['peak_rss_mib']:,.0f} / "
                f"{before if before is None else round(before):,} | "
                f"{r['dense_uxu_float32_mib']:,.0f} | {r['users_with_k']:,} "
                f"/ {r['users_padded']:,} / {r['users_without']:,} |\n")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--label', default='clothing-size')
    parser.add_argument('--users', type=int, default=39387)
    parser.add_argument('--items', type=int, default=23033)
    parser.add_argument('--interactions', type=int, default=278677)
    parser.add_argument('--k', type=int, default=40)
    parser.add_argument('--cap', type=int, default=None)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--dataset', default=None)
    parser.add_argument('--data-root', default=None)
    parser.add_argument('--out', default=results_path(
        'bench_dragon_user_graph'))
    args = parser.parse_args()
    rows = read_rows(args.out) + [run(args)]
    write_results(args.out, rows, to_markdown(rows))


if __name__ == '__main__':
    main()
