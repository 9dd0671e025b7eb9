"""Where a mini-batch LightGCN step goes on a large graph: the phases of a
``--sampler neighbor`` step (LinkNeighborLoader sampling with the true
negatives and the subgraph batch, the subgraph's normalised adjacency, the
layer-0 lookup, the propagation, the loss, the backward pass, the Adam
step), each in user and system CPU seconds and minor page faults, against
the FLOPs of the subgraph's propagation.

The graphs are those of ``experiments/scale.py`` (``--prepare`` first);
the model, batch and fan-out are its mini-batch row's (LightGCN, 3 layers,
batch 8,192, ``10,10``, one thread). The phases run the trainer's source
and model by hand, with the trainer's optimiser, so that each can be timed
alone; ``total`` is their sum per batch. The allocator is named in the
row (``LD_PRELOAD``/``MALLOC_CONF``): glibc returns every large freed
block to the system, so each step's fresh tensors are page-faulted in again
(system time), which jemalloc told to keep its pages avoids.

Usage::

    python experiments/scale.py --prepare --interactions 2e7
    python experiments/bench_minibatch_step.py --interactions 2e7
    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 \\
    MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \\
        python experiments/bench_minibatch_step.py --interactions 2e7

Rows go to ``experiments/results/minibatch_step.{json,md}`` (one per size
and allocator).
"""
import argparse
import os
import resource
import time

from report import read_rows, results_path, write_results
from scale import data_path

OUT = results_path('minibatch_step')
PHASES = ('sample', 'adjacency', 'lookup', 'propagate', 'loss', 'backward',
          'optimizer')


def allocator() -> str:
    preload = os.environ.get('LD_PRELOAD', '')
    if 'jemalloc' in preload:
        return f"jemalloc ({os.environ.get('MALLOC_CONF', 'defaults')})"
    if 'tcmalloc' in preload:
        return 'tcmalloc'
    return 'glibc'


class Phases:
    r"""Accumulates user/system seconds, wall seconds and minor page faults
    of named phases."""
    def __init__(self):
        self.totals = {name: [0.0, 0.0, 0.0, 0] for name in PHASES}
        self._last = self._now()

    @staticmethod
    def _now():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime, r.ru_stime, time.perf_counter(), r.ru_minflt

    def start(self):
        self._last = self._now()

    def lap(self, name):
        now = self._now()
        for i in range(4):
            self.totals[name][i] += now[i] - self._last[i]
        self._last = now


def run(args):
    import torch
    from torch_geometric.data import HeteroData

    from pyg_mmrec.experiment import build_trainer
    from pyg_mmrec.graphs import subgraph_adjacency
    from pyg_mmrec.nn import bpr_loss, l2_reg

    torch.set_num_threads(1)
    data = HeteroData.from_dict(torch.load(data_path(args.interactions),
                                           weights_only=True))
    config = {'loader': {'sampler': 'neighbor', 'batch_size': args.batch_size,
                         'num_neighbors': args.num_neighbors},
              'trainer': {'lr': 1e-3}}
    trainer, _ = build_trainer('lightgcn', data, config, seed=0,
                               progress=False)
    model, optimizer = trainer.model, trainer.optimizer
    model.train()
    batches = trainer.source.batches(1, torch.Generator().manual_seed(0))
    phases, sizes = Phases(), []
    for step in range(args.warmup + args.batches):
        if step == args.warmup:  # the first steps grow the heap
            phases = Phases()
        phases.start()
        batch = next(batches)
        phases.lap('sample')
        sub = batch.subgraph
        adj = subgraph_adjacency(sub, (model.user_degree, model.item_degree))
        phases.lap('adjacency')
        ego = model.ego_embeddings(sub)
        phases.lap('lookup')
        user_emb, item_emb = model.encoder(ego, adj).split(
            [sub.num_users, sub.num_items])
        phases.lap('propagate')
        user, pos, neg = batch.node_index()
        u = user_emb[user]
        loss = bpr_loss((u * item_emb[pos]).sum(-1),
                        (u * item_emb[neg]).sum(-1)) + model.reg_weight * (
            l2_reg(ego[user], ego[sub.num_users + pos],
                   ego[sub.num_users + neg]))
        phases.lap('loss')
        loss.backward()
        phases.lap('backward')
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        phases.lap('optimizer')
        sizes.append((sub.num_users + sub.num_items, adj._nnz()))
    n = args.batches
    nodes = sum(s[0] for s in sizes[args.warmup:]) / n
    nnz = sum(s[1] for s in sizes[args.warmup:]) / n
    dim, layers = ego.size(1), model.encoder.num_layers
    row = {
        'interactions': int(data['user', 'interacts', 'item'].num_edges),
        'users': data['user'].num_nodes, 'items': data['item'].num_nodes,
        'batch_size': args.batch_size, 'num_neighbors': args.num_neighbors,
        'num_layers': layers, 'embedding_dim': dim, 'batches': n,
        'allocator': allocator(), 'threads': torch.get_num_threads(),
        'subgraph_nodes': nodes, 'subgraph_nnz': nnz,
        # A multiply and an add per stored entry and feature, per layer,
        # forward; the backward pass does the same products once more.
        'propagation_gflop': 2 * nnz * dim * layers / 1e9,
        'phases': {name: {'user': t[0] / n, 'sys': t[1] / n,
                          'wall': t[2] / n, 'minor_faults': t[3] / n}
                   for name, t in phases.totals.items()},
    }
    row['cpu_per_batch'] = sum(p['user'] + p['sys']
                               for p in row['phases'].values())
    return row


def to_markdown(rows):
    lines = ['Mini-batch LightGCN step (3 layers, batch 8,192, fan-out '
             '10,10, one thread): CPU seconds per batch by phase '
             '(user + system), minor page faults in thousands', '']
    head = ['interactions', 'allocator'] + list(PHASES) + [
        'CPU s / batch', 'system s', 'faults (k)', 'subgraph nnz',
        'propagation GFLOP (fwd)']
    lines += ['| ' + ' | '.join(head) + ' |',
              '|' + '---|' * len(head)]
    for r in rows:
        p = r['phases']
        cells = [f"{r['interactions']:,}", r['allocator']]
        cells += [f"{p[k]['user'] + p[k]['sys']:.2f}" for k in PHASES]
        cells += [f"{r['cpu_per_batch']:.2f}",
                  f"{sum(v['sys'] for v in p.values()):.2f}",
                  f"{sum(v['minor_faults'] for v in p.values()) / 1e3:.0f}",
                  f"{r['subgraph_nnz']:,.0f}",
                  f"{r['propagation_gflop']:.2f}"]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--interactions', type=float, default=2e7)
    parser.add_argument('--batch-size', type=int, default=8192)
    parser.add_argument('--num-neighbors', default='10,10')
    parser.add_argument('--batches', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    args = parser.parse_args()
    row = run(args)
    rows = [r for r in read_rows(OUT)
            if (r['interactions'], r['allocator']) !=
            (row['interactions'], row['allocator'])]
    rows = sorted(rows + [row],
                  key=lambda r: (r['interactions'], r['allocator']))
    write_results(OUT, rows, to_markdown(rows))
    print(to_markdown([row]))


if __name__ == '__main__':
    main()
