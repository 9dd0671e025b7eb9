"""Peak memory and time of one model on a synthetic graph of a given size
(e.g. Amazon Clothing's or Sports' with MMRec's 4096-d image and 384-d text
features), in one process, so the peak is that of the whole run: data
generation, model construction (kNN graphs), training epochs and one
full-ranking evaluation. Also the memory the run holds after training with
the gradients freed (the process, data, graphs, parameters and optimiser
state; resident after :obj:`malloc_trim` under glibc), the floor no batch
goes below.

Usage::

    python experiments/bench_scale.py --model fmcns --label clothing-size \\
        --users 39387 --items 23033 --interactions 280000 \\
        --features image=4096 text=384 --config experiments/configs/tiktok.yaml

``--config`` takes the model's section of a per-dataset YAML (its batch size
and learning rate included); ``--set key=value`` overrides single settings;
``--max-batches`` limits the recommender's training batches of every epoch
(the model's stages, e.g. MDMNS's denoisers, always run in full).
``--powerlaw 2e7`` takes ``scale.py``'s power-law graph (1M users, 500k items,
20M interactions; ``scale.py --prepare --interactions 2e7`` first; with
``--items 50000`` the one prepared with ``--items 50000``) with random
features of ``--features``, e.g. ``image=128 text=128`` and ``--set
sampler=neighbor --max-batches 5`` for a mini-batch model at that size.
``--max-stage-blocks N`` runs each model stage (MDMNS's and GenRec-V1's
denoisers) on its first N row blocks only and regenerates the generated
graphs of N blocks of users (the others get seeded uniform random items,
so that the recommender's graphs have their full size), timing a block of
each; the row reports them and the stage epoch they extrapolate to.
Appends a row to ``experiments/results/scale.json`` and ``scale.md``.
"""
import argparse
import ctypes
import dataclasses
import gc
import itertools
import os
import statistics
import time

from report import (
    BatchReadings,
    Clock,
    build_and_train,
    model_label,
    read_rows,
    results_path,
    write_results,
)


def held_memory_mb(trainer) -> float:
    r"""Resident memory (MiB) once the trainer's gradients are freed and the
    allocator has returned what it can."""
    trainer.net.zero_grad(set_to_none=True)
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE') / 2**20


class FirstBlocks:
    r"""The first :obj:`blocks` batches of a stage's :obj:`source`."""
    def __init__(self, source, blocks):
        self.source, self.blocks = source, blocks

    def __len__(self):
        return min(len(self.source), self.blocks)

    def batches(self, epoch, generator=None):
        return itertools.islice(self.source.batches(epoch, generator),
                                self.blocks)


class StageBlocks:
    r"""Limits a DiffMM-family model's stages to their first :obj:`blocks`
    row blocks and its rebuild to :obj:`blocks` blocks of users (the other
    users' generated items: seeded uniform random items), and times both:
    :meth:`row` gives the steady seconds per trained block, the seconds per
    regenerated block, and the stage epoch they add up to over every
    block."""
    def __init__(self, blocks):
        self.blocks = blocks
        self.readings, self.rebuilds, self.full_blocks = [], [], 0

    def __call__(self, trainer):
        import torch

        core = trainer.net.core
        rebuild = core.rebuild  # the library's, bound before the patch

        def bounded_rebuild(users=None):
            gen = torch.Generator().manual_seed(len(self.rebuilds))
            order = torch.randperm(core.num_users, generator=gen)
            size = self.blocks * core.denoiser_batch_size
            with Clock() as clock:
                rebuild(order[:size])
            self.rebuilds.append((clock, min(size, core.num_users)))
            rest = order[size:]
            for key in core.keys:
                out = getattr(core, f'generated_{key}')
                out[rest] = torch.randint(core.num_items,
                                          (rest.numel(), out.size(1)),
                                          generator=gen)
            core.clear_graphs()

        core.rebuild = bounded_rebuild  # what the models' hooks call
        for i, stage in enumerate(trainer.stages):
            after = stage.after
            if after == rebuild:  # the stage holds the bound method itself
                after = bounded_rebuild
            self.full_blocks += len(stage.source)
            source = FirstBlocks(stage.source, self.blocks)
            self.readings.append(BatchReadings(source))
            trainer.stages[i] = dataclasses.replace(stage, source=source,
                                                    after=after)

    def row(self, block_size):
        steady = [r.steady() for r in self.readings]
        train = [sum(s[j] for s in steady) for j in (0, 1)] \
            if None not in steady else None
        clock, users = self.rebuilds[-1]
        per_block = [t * block_size / users for t in (clock.wall, clock.cpu)]
        epoch = (None if train is None else
                 [self.full_blocks * (a + b)
                  for a, b in zip(train, per_block)])
        return {'stage_blocks_timed': self.blocks,
                'stage_blocks_per_epoch': self.full_blocks,
                'stage_train_per_block': train,
                'stage_rebuild_per_block': per_block,
                'stage_epoch_extrapolated': epoch}


def run(args):
    import torch

    from pyg_mmrec.config import load_config, parse_settings
    from pyg_mmrec.data import make_synthetic
    from pyg_mmrec.train.records import memory_allocator, peak_memory_mb

    features = parse_settings(args.features, '--features')
    config = load_config(args.config, args.model) if args.config else {}
    overrides = parse_settings(args.set)
    config.update(overrides)

    t0 = time.perf_counter()
    if args.powerlaw:
        data = powerlaw_data(args.powerlaw, features, args.items)
        args.users = data['user'].num_nodes
        args.items = data['item'].num_nodes
    else:
        data = make_synthetic(num_users=args.users, num_items=args.items,
                              mean_interactions=args.interactions / args.users,
                              modalities=features, seed=0)
    data_time = time.perf_counter() - t0
    readings = []
    stages = (None if args.max_stage_blocks is None else
              StageBlocks(args.max_stage_blocks))
    trainer, record, build, epochs_run = build_and_train(
        args.model, data, config, args.epochs, args.max_batches, readings,
        prepare=stages)
    steady = readings[0].steady()
    build_time = build.wall
    epoch_times = [clock.wall for clock in epochs_run]
    batches = len(trainer.source) if args.max_batches is None else min(
        len(trainer.source), args.max_batches)
    held = held_memory_mb(trainer)
    eval_time = None
    if not args.no_eval:
        t0 = time.perf_counter()
        trainer.evaluate('test')
        eval_time = time.perf_counter() - t0
    store = data['user', 'interacts', 'item']
    row = {} if stages is None else stages.row(
        trainer.net.core.denoiser_batch_size)
    return {**row,
        'label': args.label, 'model': args.model,
        'users': args.users, 'items': args.items,
        'interactions': int(store.edge_index.size(1)),
        'features': features, 'settings': config, 'overrides': overrides,
        'batch_size': record['loader']['batch_size'],
        'max_batches': args.max_batches,
        'threads': torch.get_num_threads(),
        'data_time': data_time, 'build_time': build_time,
        'build_cpu': build.cpu,
        'epoch_times': epoch_times, 'eval_time': eval_time,
        # per recommender batch (the epoch's stages included), in CPU
        # seconds too: comparable on a machine shared with other jobs
        'batches_per_epoch': len(trainer.source), 'batches_timed': batches,
        'time_per_batch': epoch_times[-1] / batches,
        'cpu_per_batch': epochs_run[-1].cpu / batches,
        # the median interval between batches: a step without the epoch's
        # setup (pruning, per-epoch sampling graphs), wall and CPU seconds
        'steady_time_per_batch': None if steady is None else steady[0],
        'steady_cpu_per_batch': None if steady is None else steady[1],
        # the median number of nodes of a batch's subgraph (mini-batches)
        'subgraph_nodes': (statistics.median(readings[0].subgraph_nodes)
                           if readings[0].subgraph_nodes else None),
        'peak_memory_mb': peak_memory_mb(),
        'held_after_training_mb': held,
        'allocator': memory_allocator(),
    }


def powerlaw_data(interactions, features, num_items=None):
    r"""The power-law graph of ``experiments/scale.py`` with
    :obj:`interactions` (``scale.py --prepare`` first), with random item
    features of the given modalities and sizes (seeded; the costs of the
    kNN graphs and projections do not depend on the values)."""
    import torch
    from scale import data_path
    from torch_geometric.data import HeteroData

    data = HeteroData.from_dict(torch.load(
        data_path(interactions, num_items), weights_only=True))
    gen = torch.Generator().manual_seed(0)
    for modality, dim in features.items():
        data['item'][f'x_{modality}'] = torch.randn(
            data['item'].num_nodes, int(dim), generator=gen)
    return data


def variant(row):
    r"""What a row measures: graph, model, setting overrides, allocator."""
    return (row['label'], row['model'], row.get('overrides', {}),
            row.get('allocator', 'glibc'))


def to_markdown(rows):
    lines = ['| graph | model | users | items | interactions | features | '
             'batches timed / epoch | s / epoch | s / batch (CPU s) | '
             'steady s / batch (CPU s) | stage s / block: train, rebuild '
             '(CPU s); epoch h | eval s | build s | peak MiB | '
             'held after training MiB |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        feats = ', '.join(f'{k} {v}' for k, v in r['features'].items())
        batches = 'all' if r['max_batches'] is None else r['max_batches']
        if 'batches_per_epoch' in r:
            batches = f"{r['batches_timed']} / {r['batches_per_epoch']}"
        epoch = ', '.join(f'{t:.0f}' for t in r['epoch_times'])
        per_batch = ('-' if 'time_per_batch' not in r else
                     f"{r['time_per_batch']:.2f} ({r['cpu_per_batch']:.2f})")
        steady = ('-' if r.get('steady_time_per_batch') is None else
                  f"{r['steady_time_per_batch']:.2f} "
                  f"({r['steady_cpu_per_batch']:.2f})")
        stage = '-'
        if r.get('stage_epoch_extrapolated'):
            (tw, tc), (rw, rc) = (r['stage_train_per_block'],
                                  r['stage_rebuild_per_block'])
            stage = (f"{tw:.1f}, {rw:.1f} ({tc:.1f}, {rc:.1f}); "
                     f"{r['stage_epoch_extrapolated'][0] / 3600:.1f} "
                     f"({r['stage_blocks_per_epoch']} blocks)")
        held = r.get('held_after_training_mb')
        held = '-' if held is None else f'{held:.0f}'
        eval_s = ('-' if r.get('eval_time') is None else
                  f"{r['eval_time']:.1f}")
        lines.append(
            f"| {r['label']} | {model_label(r)} | {r['users']} | "
            f"{r['items']} | {r['interactions']} | {feats} | {batches} | "
            f"{epoch} | {per_batch} | {steady} | {stage} | {eval_s} | "
            f"{r['build_time']:.0f} | "
            f"{r['peak_memory_mb']:.0f} | {held} |")
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', required=True)
    parser.add_argument('--label', required=True)
    parser.add_argument('--users', type=int)
    parser.add_argument('--items', type=int)
    parser.add_argument('--interactions', type=int)
    parser.add_argument('--powerlaw', type=float,
                        help="the power-law graph of scale.py with this "
                             "many interactions instead of make_synthetic's")
    parser.add_argument('--features', nargs='+', default=['image=4096',
                                                          'text=384'])
    parser.add_argument('--config')
    parser.add_argument('--set', nargs='*', default=[])
    parser.add_argument('--epochs', type=int, default=1)
    parser.add_argument('--max-batches', type=int)
    parser.add_argument('--max-stage-blocks', type=int,
                        help="train each model stage on its first N row "
                             "blocks and regenerate N blocks of users "
                             "(timed; see the module's description)")
    parser.add_argument('--no-eval', action='store_true',
                        help='skip the full-ranking evaluation (at 1M '
                             'users: 5e11 scores; bench_million.py measures '
                             'it)')
    parser.add_argument('--out', default=results_path('scale'),
                        help='append to <out>.json and <out>.md')
    args = parser.parse_args()
    if not args.powerlaw and None in (args.users, args.items,
                                      args.interactions):
        parser.error('--users, --items and --interactions, or --powerlaw')
    row = run(args)
    # a new measurement replaces the one of the same variant
    rows = [r for r in read_rows(args.out) if variant(r) != variant(row)]
    rows.append(row)
    write_results(args.out, rows, to_markdown(rows))
    print(to_markdown([row]))


if __name__ == '__main__':
    main()
