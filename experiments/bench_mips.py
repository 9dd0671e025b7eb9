"""Recall and speed of ``recommend --index ivf`` (faiss's inverted-file
inner-product index, :func:`pyg_mmrec.recommend.inner_product_top_k`)
against the exact top-k (:func:`pyg_mmrec.recommend.top_k`), on the user
and item embeddings of a finished run, or on a synthetic catalogue of
clustered embeddings (``--items``).

Usage::

    python experiments/bench_mips.py --run runs/dragon-tiktok-seed0 \\
        --data-root ../shared/data
    python experiments/bench_mips.py --items 1000000 --users 2000

Recall@k: the share of the exact top-k that the index returns (training
items excluded in both for a run). Appends to
``experiments/results/bench_mips.{json,md}``.
"""
import argparse
import json

from report import Clock, read_rows, results_path, write_results


def fixed_embeddings(users, items):
    r"""A recommender scoring by inner products of the fixed tables."""
    import torch

    from pyg_mmrec.models import Recommender

    class Fixed(Recommender):
        def __init__(self):
            torch.nn.Module.__init__(self)
            self.num_users, self.num_items = users.size(0), items.size(0)

        def embeddings(self):
            return users, items
    return Fixed()


def run(args):
    import torch

    from pyg_mmrec.graphs import train_graph
    from pyg_mmrec.recommend import inner_product_top_k, load_run_model, top_k
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    if args.run:
        model, data, _ = load_run_model(args.run, data_root=args.data_root)
        pairs = train_graph(data)
        label = args.run
    else:  # clustered: 1,000 centres, unit noise
        centres = torch.randn(1000, args.dim, generator=gen) * 3
        items = centres[torch.randint(1000, (args.items, ), generator=gen)]
        items += torch.randn(args.items, args.dim, generator=gen)
        users = torch.randn(args.users, args.dim, generator=gen)
        model, pairs = fixed_embeddings(users, items), None
        label = f'synthetic {args.items:,} items x {args.dim}'
    users = torch.randperm(model.num_users, generator=gen)[:args.users]
    with Clock() as exact_clock, torch.no_grad():
        exact, _ = top_k(model, users, args.k, pairs)
    rows = []
    for nprobe in args.nprobe:
        with Clock() as clock:
            approx, _ = inner_product_top_k(model, users, args.k, pairs,
                                            nprobe=nprobe)
        hit = (approx[:, :, None] == exact[:, None]) & (exact[:, None] >= 0)
        recall = hit.any(-1).float().sum() / (exact >= 0).float().sum()
        rows.append({'label': label, 'items': model.num_items,
                     'users': users.numel(), 'k': args.k, 'nprobe': nprobe,
                     'recall': float(recall), 'exact_s': exact_clock.wall,
                     'ivf_s': clock.wall, 'threads': args.threads})
        print(json.dumps(rows[-1]))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--run', default=None)
    parser.add_argument('--data-root', default=None)
    parser.add_argument('--items', type=int, default=1_000_000)
    parser.add_argument('--users', type=int, default=2000)
    parser.add_argument('--dim', type=int, default=64)
    parser.add_argument('--k', type=int, default=20)
    parser.add_argument('--nprobe', type=int, nargs='+', default=[4, 16, 64])
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--out', default=results_path('bench_mips'))
    args = parser.parse_args()
    rows = read_rows(args.out) + run(args)
    table = ('| embeddings | items | users | k | nprobe | recall@k vs exact '
             '| exact s | ivf s (build + search) |\n'
             '|---|---|---|---|---|---|---|---|\n' + ''.join(
                 f"| {r['label']} | {r['items']:,} | {r['users']:,} | "
                 f"{r['k']} | {r['nprobe']} | {r['recall']:.3f} | "
                 f"{r['exact_s']:.2f} | {r['ivf_s']:.2f} |\n" for r in rows))
    write_results(args.out, rows, table)


if __name__ == '__main__':
    main()
