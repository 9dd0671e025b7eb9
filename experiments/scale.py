"""Scaling of LightGCN training with the number of interactions: full-graph
vs LinkNeighborLoader mini-batches vs 2-process DDP, on synthetic graphs with
power-law degrees (users = interactions / 20, items = interactions / 40: 1M
users and 500k items at 2e7).

Each run is one process (two for DDP), so its peak resident memory is that
of loading the graph, building the model and training; the graph is
generated once per size (``--prepare``) and loaded by the runs. Epochs
longer than ``--max-batches`` batches are timed on their first batches and
extrapolated to a whole epoch (labelled in the results).

Usage::

    python experiments/scale.py --prepare --interactions 1e5 1e6 1e7 2e7
    python experiments/scale.py --interactions 1e6 --mode full neighbor ddp2 \\
        --max-batches 50 --max-memory-gib 8
    python experiments/scale.py --plot        # tables and the log-log plot

Rows go to ``experiments/results/scale_modes.json`` / ``.md`` and the plot to
``experiments/results/scale_modes.png``.
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

from report import read_rows, results_path, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = results_path('scale_modes')
DATA_DIR = os.environ.get('PYG_MMREC_SCALE_DATA',
                          os.path.join(HERE, '..', 'runs', 'scale-data'))
MODES = ('full', 'neighbor', 'ddp2')


def power_law_graph(num_interactions, seed=0, num_items=None):
    r"""Interactions with power-law user activity (Lomax, exponent 2.5,
    at least 5) and Zipf item popularity (exponent 0.8), split 80/10/10 at
    random; duplicate pairs collapsed. Users: one per 20 interactions;
    items: one per 40, or :obj:`num_items` (e.g. 50k for the models whose
    denoisers hold an items-by-hidden layer, MDMNS and GenRec-V1)."""
    import numpy as np
    import torch

    from pyg_mmrec.data import build_hetero_data
    num_users = max(int(num_interactions // 20), 10)
    if num_items is None:
        num_items = max(int(num_interactions // 40), 10)
    rng = np.random.default_rng(seed)
    activity = 5 + rng.pareto(2.5, num_users)
    activity = activity / activity.sum() * num_interactions
    count = np.maximum(np.floor(activity + rng.random(num_users)), 1)
    user = np.repeat(np.arange(num_users), count.astype(np.int64))
    pop = 1.0 / np.arange(1, num_items + 1) ** 0.8
    rank = rng.permutation(num_items)
    cdf = np.cumsum(pop[rank]) / pop.sum()
    item = np.searchsorted(cdf, rng.random(user.size)).clip(max=num_items - 1)
    keys = np.unique(user * num_items + item)
    user, item = keys // num_items, keys % num_items
    split = rng.choice(3, size=keys.size, p=[0.8, 0.1, 0.1])
    data = build_hetero_data(user, item, split, num_users, num_items,
                             name=f'powerlaw-{num_interactions:.0e}')
    # As a dict of tensors: it loads with weights_only=True.
    torch.save(data.to_dict(), data_path(num_interactions, num_items))
    return data


def data_path(n, num_items=None):
    r"""The file of the graph with :obj:`n` interactions (and
    :obj:`num_items` items when not the default one per 40)."""
    items = '' if num_items is None else f'-items{int(num_items)}'
    return os.path.join(DATA_DIR, f'powerlaw-{int(n)}{items}.pt')


class TimedSource:
    r"""A batch source that records when its first batch of an epoch
    arrives."""
    def __init__(self, source):
        self.source, self.first = source, []

    def __len__(self):
        return len(self.source)

    def batches(self, epoch, generator):
        t0 = time.perf_counter()
        for i, batch in enumerate(self.source.batches(epoch, generator)):
            if i == 0:
                self.first.append(time.perf_counter() - t0)
            yield batch


def train(args, mode, rank=0):
    r"""Trains LightGCN for one (possibly cut) epoch; returns its row."""
    import torch
    from torch_geometric.data import HeteroData

    from pyg_mmrec.experiment import build_trainer
    from pyg_mmrec.train.records import peak_memory_mb
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = HeteroData.from_dict(torch.load(data_path(args.n),
                                           weights_only=True))
    load_time = time.perf_counter() - t0
    sampler = 'full' if mode == 'full' else 'neighbor'
    config = {'loader': {'sampler': sampler, 'batch_size': args.batch_size,
                         'num_neighbors': args.num_neighbors,
                         'num_workers': args.loader_workers},
              'trainer': {'lr': 1e-3}}
    t0 = time.perf_counter()
    # Under the DDP mode's process group: one replica per process.
    trainer, _ = build_trainer('lightgcn', data, config, seed=0,
                               progress=False)
    build_time = time.perf_counter() - t0
    trainer.source = timed = TimedSource(trainer.source)
    t0, c0 = time.perf_counter(), time.process_time()
    losses = trainer.train_epoch(1, max_batches=args.max_batches)
    run_time = time.perf_counter() - t0
    cpu_time = time.process_time() - c0
    batches = len(timed) if args.max_batches is None else min(
        len(timed), args.max_batches)
    store = data['user', 'interacts', 'item']
    return {
        'mode': mode, 'interactions': int(store.edge_index.size(1)),
        'train_interactions': int(store.train_mask.sum()),
        'users': data['user'].num_nodes, 'items': data['item'].num_nodes,
        'batch_size': args.batch_size,
        'num_neighbors': args.num_neighbors if sampler != 'full' else None,
        'batches_per_epoch': len(timed), 'batches_timed': batches,
        'time_per_batch': run_time / batches,
        # CPU seconds: comparable on a machine shared with other jobs.
        'cpu_time_per_batch': cpu_time / batches,
        'time_per_epoch': run_time / batches * len(timed),
        'extrapolated': batches < len(timed),
        'time_to_first_batch': timed.first[0],
        'load_time': load_time, 'build_time': build_time,
        'loss': losses['loss'], 'peak_memory_mb': peak_memory_mb(),
        'rank': rank, 'threads': torch.get_num_threads(),
    }


def ddp_worker(rank, args, init, out):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=init, rank=rank,
                            world_size=2)
    try:
        row = train(args, 'ddp2', rank)
        with open(f'{out}.{rank}.json', 'w') as f:
            json.dump(row, f)
    finally:
        dist.destroy_process_group()


def run_one(args):
    r"""One (size, mode) row, in this process (``--worker``)."""
    if args.max_memory_gib:
        cap = int(args.max_memory_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    if args.mode[0] != 'ddp2':
        return train(args, args.mode[0])
    import tempfile

    import torch.multiprocessing as mp
    tmp = tempfile.mkdtemp()
    mp.spawn(ddp_worker, args=(args, f'file://{tmp}/init', f'{tmp}/row'),
             nprocs=2, join=True)
    rows = []
    for rank in range(2):
        with open(f'{tmp}/row.{rank}.json') as f:
            rows.append(json.load(f))
    row = dict(rows[0])
    # Both processes train at once: the epoch ends with the slower one;
    # memory is the sum of both processes.
    row['time_per_epoch'] = max(r['time_per_epoch'] for r in rows)
    row['time_per_batch'] = max(r['time_per_batch'] for r in rows)
    row['peak_memory_mb'] = sum(r['peak_memory_mb'] for r in rows)
    row['per_process_peak_mb'] = [r['peak_memory_mb'] for r in rows]
    return row


def save_row(row):
    r"""Puts :obj:`row` into the rows of :obj:`OUT` (in place of the one
    of the same mode and size), ordered by size and mode."""
    rows = [r for r in read_rows(OUT) if (r['mode'], r['target']) !=
            (row['mode'], row['target'])]
    rows.append(row)
    rows.sort(key=lambda r: (r['target'], MODES.index(r['mode'])))
    write_results(OUT, rows)


def fit_exponent(rows, key):
    r"""The slope of log(key) against log(interactions) (least squares)."""
    pts = [(math.log(r['interactions']), math.log(r[key])) for r in rows
           if r.get(key)]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None


def to_markdown(rows):
    lines = ['| interactions | users | items | mode | batches / epoch | '
             's / batch | s / epoch | first batch s | build s | peak MiB |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        if 'error' in r:
            lines.append(f"| {r['target']:.0e} | | | {r['mode']} | | | | | | "
                         f"failed: {r['error']} |")
            continue
        ext = ' (extrapolated from %d)' % r['batches_timed'] \
            if r['extrapolated'] else ''
        lines.append(
            f"| {r['interactions']:,} | {r['users']:,} | {r['items']:,} | "
            f"{r['mode']} | {r['batches_per_epoch']} | "
            f"{r['time_per_batch']:.3f} | {r['time_per_epoch']:.1f}{ext} | "
            f"{r['time_to_first_batch']:.2f} | {r['build_time']:.1f} | "
            f"{r['peak_memory_mb']:.0f} |")
    lines += ['', 'full: full-graph batches; neighbor: LinkNeighborLoader '
              'mini-batches (torch-sparse sampler); ddp2: 2 processes of '
              'neighbor (gloo), the slower one\'s time, both processes\' '
              'memory summed. One thread per process, on a shared machine.',
              '']
    for mode in MODES:
        ok = [r for r in rows if r['mode'] == mode and 'error' not in r]
        t, m = fit_exponent(ok, 'time_per_epoch'), fit_exponent(
            ok, 'peak_memory_mb')
        if t is not None:
            line = (f"- {mode}: time per epoch ~ E^{t:.2f}, peak memory "
                    f"~ E^{m:.2f} ({len(ok)} sizes)")
            large = [r for r in ok if r['target'] >= 1e6]
            if 1 < len(large) < len(ok):  # without the fixed overheads
                line += (f"; from 1e6 on: E^"
                         f"{fit_exponent(large, 'time_per_epoch'):.2f} and "
                         f"E^{fit_exponent(large, 'peak_memory_mb'):.2f}")
            lines.append(line)
    return '\n'.join(lines) + '\n'


def plot(rows):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for mode in MODES:
        ok = sorted((r for r in rows
                     if r['mode'] == mode and 'error' not in r),
                    key=lambda r: r['interactions'])
        if not ok:
            continue
        x = [r['interactions'] for r in ok]
        for ax, key in zip(axes, ('time_per_epoch', 'peak_memory_mb')):
            slope = fit_exponent(ok, key)
            ax.plot(x, [r[key] for r in ok], 'o-',
                    label=f'{mode} (slope {slope:.2f})' if slope else mode)
    for ax, title in zip(axes, ('time per epoch (s)', 'peak memory (MiB)')):
        ax.set_xscale('log')
        ax.set_yscale('log')
        ax.set_xlabel('interactions')
        ax.set_title(f'LightGCN {title}, 1 thread per process')
        ax.grid(True, which='both', alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(OUT + '.png', dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--interactions', type=float, nargs='+',
                        default=[1e5, 1e6, 1e7, 2e7])
    parser.add_argument('--mode', nargs='+', choices=MODES,
                        default=list(MODES))
    parser.add_argument('--prepare', action='store_true',
                        help='generate the graphs of --interactions')
    parser.add_argument('--items', type=int, default=None,
                        help='with --prepare: this many items (default: '
                        'one per 40 interactions)')
    parser.add_argument('--plot', action='store_true',
                        help='write the table and plot of the rows so far')
    parser.add_argument('--batch-size', type=int, default=8192)
    parser.add_argument('--num-neighbors', default='10,10')
    parser.add_argument('--loader-workers', type=int, default=0)
    parser.add_argument('--max-batches', type=int, default=None)
    parser.add_argument('--max-memory-gib', type=float, default=None,
                        help='address-space cap of each run (RLIMIT_AS)')
    parser.add_argument('--timeout', type=float, default=3600)
    parser.add_argument('--worker', action='store_true',
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # one row, printed as JSON on the last line
        args.n = args.interactions[0]
        print(json.dumps(run_one(args)))
        return
    if args.prepare:
        os.makedirs(DATA_DIR, exist_ok=True)
        for n in args.interactions:
            t0 = time.perf_counter()
            data = power_law_graph(n, num_items=args.items)
            print(f"{n:.0e}: {data['user'].num_nodes} users, "
                  f"{data['item'].num_nodes} items, "
                  f"{data['user', 'interacts', 'item'].edge_index.size(1)} "
                  f"interactions ({time.perf_counter() - t0:.0f} s)")
        return
    if not args.plot:
        for n in args.interactions:
            for mode in args.mode:
                cmd = [sys.executable, __file__, '--worker', '--interactions',
                       str(n), '--mode', mode, '--batch-size',
                       str(args.batch_size), '--num-neighbors',
                       args.num_neighbors, '--loader-workers',
                       str(args.loader_workers)]
                if args.max_batches:
                    cmd += ['--max-batches', str(args.max_batches)]
                if args.max_memory_gib:
                    cmd += ['--max-memory-gib', str(args.max_memory_gib)]
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True,
                                          timeout=args.timeout)
                    if proc.returncode == 0:
                        row = json.loads(proc.stdout.strip().splitlines()[-1])
                    else:
                        tail = (proc.stderr.strip().splitlines() or ['?'])[-1]
                        row = {'mode': mode, 'error': tail[:200]}
                except subprocess.TimeoutExpired:
                    row = {'mode': mode, 'error': f'over {args.timeout:.0f} s'}
                row.update(target=n, max_memory_gib=args.max_memory_gib)
                save_row(row)
                print(to_markdown([row]), flush=True)
    rows = read_rows(OUT)
    write_results(OUT, rows, to_markdown(rows))
    if any('error' not in r for r in rows):
        plot(rows)
    print(to_markdown(rows))


if __name__ == '__main__':
    main()
