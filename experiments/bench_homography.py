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

The weights and neighbour counts default to REARM's Clothing settings
(models.md 4.6: user/item k 45/10, image weights 0.1/0.1, co-occurrence
weights 0.7/0.1); a modality or part weighted 0 is not searched.

``--cooccurrence-cap`` counts the co-occurrence top-k with at most that
many users per item (items per user) considered, by blocks of rows
(:func:`pyg_mmrec.graphs.cooccurrence.capped_cooccurrence_topk`); without
it the counts are exact (every co-occurring pair at once). With
``--cooccurrence-cap``, the share of every node's exact top-k co-neighbours
that the capped one keeps is measured when the exact counts fit
(``--co-recall``).

Two searches are approximate: ``--knn-method ivf`` (an inverted file,
:mod:`pyg_mmrec.graphs.ivf`, 16 probes) and ``--max-dim`` (neighbours of
wider features searched in a principal projection,
:func:`pyg_mmrec.graphs.knn_graph`: its default ``rerank`` times k
candidates per node, re-ranked by their exact cosine). With either, the
recall of the neighbours against the exact ones is measured on
``--recall-sample`` query rows per side and modality (the search's graph
at those rows against their exact top-k by a direct product).

Memory: the process's resident peak (``ru_maxrss``) after the synthetic
data is built; then the high-water mark is reset to the resident size
(``/proc/self/clear_refs``, Linux; this resets ``ru_maxrss`` too), so the
second peak is the process's during the build alone, and the build's own
peak is that minus the resident memory it starts from. Appends a row to
``experiments/results/bench_homography.json`` and ``.md``.
"""
import argparse
import inspect
import json
import resource

from report import Clock, read_rows, results_path, write_results


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak():
    r"""Resets the resident high-water mark (and with it ``ru_maxrss``) to
    the current resident size and returns that size (MiB); :obj:`None` where
    Linux does not allow it."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        with open('/proc/self/status') as f:
            return next(int(line.split()[1]) / 1024 for line in f
                        if line.startswith('VmRSS:'))
    except OSError:
        return None


def neighbour_recall(x, k, sample, seed=0, **search):
    r"""Mean fraction of the exact cosine top-(k - 1) neighbours (self
    excluded) of :obj:`sample` random rows that
    :func:`~pyg_mmrec.graphs.knn_graph` finds with the approximate
    :obj:`search` options (:obj:`max_dim`, :obj:`method="ivf"`)."""
    import torch

    from pyg_mmrec.graphs import knn_graph
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randperm(x.size(0), generator=gen)[:sample]
    unit = torch.nn.functional.normalize(x, dim=-1)
    sim = unit[rows] @ unit.t()
    sim[torch.arange(rows.numel()), rows] = float('-inf')
    exact = sim.topk(k - 1, dim=1)[1]
    edge_index, _ = knn_graph(x, k, loop=True, **search)
    approx = edge_index[1].view(-1, k)[rows, 1:]
    return (approx[:, :, None] == exact[:, None]).any(-1).float().mean().item()


def cooccurrence_recall(graph, side, k, cap, seed=0):
    r"""Mean share of the nodes' exact top-k co-neighbours (nodes with
    some) that the capped top-k holds (as sets; ties at the k-th count
    make both lists one choice among equals)."""
    import torch

    from pyg_mmrec.graphs import cooccurrence_graph, topk_entries_per_row
    from pyg_mmrec.graphs.cooccurrence import capped_cooccurrence_topk
    args = (graph.edge_index, graph.num_users, graph.num_items)
    n = graph.num_users if side == 'user' else graph.num_items
    exact, _ = topk_entries_per_row(cooccurrence_graph(
        *args, side=side, dtype=torch.float64), k)
    capped, _ = capped_cooccurrence_topk(
        *args, k, cap, side=side,
        generator=torch.Generator().manual_seed(seed))
    hit = torch.isin(exact[0] * n + exact[1], capped[0] * n + capped[1])
    found = torch.zeros(n, dtype=torch.float64).index_add_(
        0, exact[0], hit.double())
    total = torch.bincount(exact[0], minlength=n).double()
    return (found[total > 0] / total[total > 0]).mean().item()


def run(args):
    import torch

    from pyg_mmrec.config import parse_settings
    from pyg_mmrec.data import load_dataset, make_synthetic
    from pyg_mmrec.data.hetero import item_features
    from pyg_mmrec.graphs import knn_graph, train_graph
    from pyg_mmrec.graphs.homography import (
        cooccurrence_topk_graph,
        interest_features,
        similarity_graph,
    )
    from pyg_mmrec.graphs.sparse import weighted_sum

    torch.set_num_threads(args.threads)
    rerank = inspect.signature(knn_graph).parameters['rerank'].default
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
    rss_start = reset_peak()
    times, cpu_times = {}, {}

    def timed(name, fn):
        with Clock() as clock:
            out = fn()
        times[name], cpu_times[name] = clock.wall, clock.cpu
        print(f'{name}: {clock.wall:.1f} s ({clock.cpu:.1f} CPU s)',
              flush=True)
        return out

    gen = torch.Generator().manual_seed(0)
    cap = args.cooccurrence_cap
    co_u = timed('cooccurrence_user', lambda: cooccurrence_topk_graph(
        graph, 'user', args.user_k, gen, cap))
    co_i = timed('cooccurrence_item', lambda: cooccurrence_topk_graph(
        graph, 'item', args.item_k, gen, cap))
    interest = timed('interest_features', lambda: {
        m: interest_features(graph, v) for m, v in x.items()})
    # As homography_graphs: a side whose co-occurrence weight is 1 is not
    # searched.
    sides = {'user': dict(feats=interest, k=args.user_k, co=co_u,
                          image_weight=args.user_image_weight,
                          co_weight=args.user_co_weight),
             'item': dict(feats=x, k=args.item_k, co=co_i,
                          image_weight=args.item_image_weight,
                          co_weight=args.item_co_weight)}
    sims = {side: timed(f'knn_{side}', lambda: similarity_graph(
        s['feats'], s['k'], s['image_weight'], max_dim=args.max_dim,
        method=args.knn_method))
        for side, s in sides.items() if s['co_weight'] < 1}
    timed('mixtures', lambda: [
        weighted_sum([sides[side]['co'], sim], [sides[side]['co_weight'],
                                                1 - sides[side]['co_weight']])
        for side, sim in sims.items()])
    peak = rss_mib()  # since reset_peak: the process's peak in the build
    recall = {}
    approximate = args.max_dim is not None or args.knn_method == 'ivf'
    for side in sims if approximate else ():
        s = sides[side]
        for m, v in s['feats'].items():
            weight = (s['image_weight'] if m == 'image' else
                      1 - s['image_weight'])
            projected = args.max_dim is not None and v.size(1) > args.max_dim
            if weight > 0 and (projected or args.knn_method == 'ivf'):
                recall[f'{side}_{m}'] = neighbour_recall(
                    v, s['k'], args.recall_sample, max_dim=args.max_dim,
                    method=args.knn_method)
                print(f'recall {side} {m}: {recall[f"{side}_{m}"]:.3f}')
    if cap is not None and args.co_recall:
        for side, k in (('user', args.user_k), ('item', args.item_k)):
            recall[f'co_{side}'] = cooccurrence_recall(graph, side, k, cap)
            print(f'co-occurrence recall {side}: {recall[f"co_{side}"]:.3f}')
    row = {'label': args.label, 'users': data['user'].num_nodes,
           'items': data['item'].num_nodes,
           'train_interactions': graph.edge_index.size(1),
           'features': features,
           'threads': args.threads, 'max_dim': args.max_dim,
           'cooccurrence_cap': cap, 'knn_method': args.knn_method,
           'rerank': rerank if args.max_dim is not None else None,
           'settings': {k: getattr(args, k) for k in SETTINGS},
           'neighbour_recall': recall, 'times': times,
           'cpu_times': cpu_times,
           'total_time': sum(times.values()),
           'peak_rss_after_data_mib': rss_data,
           'peak_rss_after_graphs_mib': peak,
           'rss_before_build_mib': rss_start}
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
    parser.add_argument('--user-k', type=int, default=45)
    parser.add_argument('--item-k', type=int, default=10)
    parser.add_argument('--user-image-weight', type=float, default=0.1)
    parser.add_argument('--item-image-weight', type=float, default=0.1)
    parser.add_argument('--user-co-weight', type=float, default=0.7)
    parser.add_argument('--item-co-weight', type=float, default=0.1)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--max-dim', type=int, default=None)
    parser.add_argument('--knn-method', default='auto',
                        help="knn_graph's method; 'ivf' searches "
                             "approximately (inverted file)")
    parser.add_argument('--recall-sample', type=int, default=2000)
    parser.add_argument('--cooccurrence-cap', type=int, default=None)
    parser.add_argument('--co-recall', action='store_true',
                        help='measure the capped co-occurrence top-k '
                        'against the exact one (needs the exact counts)')
    parser.add_argument('--dataset', default=None,
                        help='a real dataset instead of the synthetic graph')
    parser.add_argument('--data-root', default=None)
    parser.add_argument('--out', default=results_path('bench_homography'),
                        help='append to <out>.json and <out>.md')
    args = parser.parse_args()
    row = run(args)
    rows = read_rows(args.out) + [row]
    write_results(args.out, rows, to_markdown(rows))


def to_markdown(rows):
    r"""The table of every row (see :func:`markdown_row`)."""
    return ('| graph | settings k u/i, image w u/i, co w u/i | threads | '
            'kNN search | co-occ. u/i (s) | interest (s) | kNN user (s) | '
            'kNN item (s) | total (s) | peak RSS data / build (MiB) | '
            'build peak above start (MiB) | neighbour recall vs exact |\n'
            '|---|---|---|---|---|---|---|---|---|---|---|---|\n' +
            ''.join(markdown_row(r) for r in rows))


#: The rows written before the settings were recorded used Baby's.
SETTINGS = ('user_k', 'item_k', 'user_image_weight', 'item_image_weight',
            'user_co_weight', 'item_co_weight')
_BABY = dict(zip(SETTINGS, (40, 10, 0.2, 0.0, 0.4, 0.2)))


def markdown_row(r):
    t = r['times']
    c = r.get('settings', _BABY)
    recall = ', '.join(f'{k} {v:.3f}' for k, v in
                       r.get('neighbour_recall', {}).items()) or '-'
    if r.get('cooccurrence_cap') is not None:
        search = f"co cap {r['cooccurrence_cap']}, "
    else:
        search = ''
    search += ('exact' if r.get('max_dim') is None else
              f"{r['max_dim']}-d" + (f", rerank {r['rerank']}"
                                      if r.get('rerank') else ''))
    if r.get('knn_method') == 'ivf':
        search = search.replace('exact', 'ivf 16 probes')
    start = r.get('rss_before_build_mib')  # absent: the peak was not reset
    build = (f"{r['peak_rss_after_graphs_mib'] - start:.0f}"
             if start is not None else '-')
    seconds = ' | '.join(f"{t[k]:.1f}" if k in t else '-' for k in
                         ('knn_user', 'knn_item'))
    return (f"| {r['label']} ({r['users']}u/{r['items']}i/"
            f"{r['train_interactions']} train) | {c['user_k']}/{c['item_k']}, "
            f"{c['user_image_weight']:g}/{c['item_image_weight']:g}, "
            f"{c['user_co_weight']:g}/{c['item_co_weight']:g} | "
            f"{r['threads']} | {search} | {t['cooccurrence_user']:.1f} / "
            f"{t['cooccurrence_item']:.1f} | {t['interest_features']:.1f} | "
            f"{seconds} | {r['total_time']:.1f} | "
            f"{r['peak_rss_after_data_mib']:.0f} / "
            f"{r['peak_rss_after_graphs_mib']:.0f} | {build} | {recall} |\n")


if __name__ == '__main__':
    main()
