"""Checks mini-batch and data-parallel training on GPUs (never run in CI):
LightGCN on LinkNeighborLoader batches on ``cuda``, and DistributedDataParallel
over NCCL started by ``torchrun`` (2 processes at batch size B against 1 at
2B, full-graph and mini-batch).

Usage (on a machine with a GPU)::

    python experiments/check_distributed_cuda.py [--epochs 3]

``--device cpu`` runs the same comparison on the CPU (gloo, 2 processes),
which is what CI's 2-process test checks in small; its results go to
``experiments/results/distributed_cpu_check.json`` / ``.md``.

With two or more GPUs it runs ``torchrun --standalone --nproc_per_node 2 -m
pyg_mmrec train ... --device cuda`` (NCCL, one GPU per process); with one
GPU, NCCL refuses two processes on the same device, so it checks a
one-process NCCL group around the DDP wrapper instead and says so. Prints
one line per check and writes ``experiments/results/distributed_cuda_check
.json``. Exits 1 when a check fails, 2 when no GPU is present.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import torch
from report import results_path, write_results

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')

SYNTHETIC = ['--model', 'lightgcn', '--dataset', 'synthetic', '--config',
             'none', '--no-progress', '--lr', '5e-3', '--patience', '50']


def train_cli(out_dir, nproc, batch_size, epochs, extra=(), device='cuda'):
    r"""One ``python -m pyg_mmrec train`` run on :obj:`device` (under
    ``torchrun`` for :obj:`nproc` > 1); returns its results and wall
    time."""
    launcher = ([sys.executable, '-m', 'torch.distributed.run', '--standalone',
                 f'--nproc_per_node={nproc}'] if nproc > 1 else
                [sys.executable])
    cmd = launcher + ['-m', 'pyg_mmrec', 'train', *SYNTHETIC, '--device',
                      device, '--epochs', str(epochs), '--batch-size',
                      str(batch_size), '--output-dir', out_dir, *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    with open(os.path.join(out_dir, 'results.json')) as f:
        return json.load(f), time.perf_counter() - t0


def check_one_process_nccl(epochs):
    r"""A one-process NCCL group: the DDP wrapper on a CUDA model trains
    and evaluates (the all-reduces of gradients and metric sums run)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from pyg_mmrec.data import make_synthetic
    from pyg_mmrec.models import get_model
    from pyg_mmrec.train import Trainer, build_source
    store = dist.HashStore()
    dist.init_process_group('nccl', store=store, rank=0, world_size=1)
    try:
        data = make_synthetic(num_users=2000, num_items=1500, seed=0)
        model = get_model('lightgcn')(data.to('cuda')).cuda()
        ddp = DistributedDataParallel(model, broadcast_buffers=False,
                                      find_unused_parameters=True)
        data = data.to('cuda')
        res = Trainer(ddp, data, source=build_source(
            ddp, data, sampler='neighbor', num_neighbors='10,10'),
            epochs=epochs, lr=5e-3, progress=False).fit()
        return res['test']['recall@20']
    finally:
        dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda')
    args = parser.parse_args()
    cpu = args.device == 'cpu'
    if not cpu and not torch.cuda.is_available():
        print('no CUDA device: nothing to check')
        return 2
    # On the CPU, two gloo processes.
    gpus = 2 if cpu else torch.cuda.device_count()
    report = {'device': 'cpu (gloo)' if cpu else
              torch.cuda.get_device_name(0), 'gpus': gpus, 'checks': {}}
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for sampler in ('full', 'neighbor'):
            extra = ['--sampler', sampler, '--num-neighbors', '10,10']
            one, t1 = train_cli(os.path.join(tmp, f'{sampler}1'), 1, 1024,
                                args.epochs, extra, args.device)
            row = {'1 process recall@20': one['test']['recall@20'],
                   '1 process s': t1}
            passed = math.isfinite(one['test']['recall@20'])
            if gpus >= 2:
                two, t2 = train_cli(os.path.join(tmp, f'{sampler}2'), 2, 512,
                                    args.epochs, extra, args.device)
                diff = abs(two['test']['recall@20'] - one['test']['recall@20'])
                # Full graph: the same triples per step (float order only);
                # mini-batch: other sampled subgraphs (noise).
                passed &= diff < (1e-3 if sampler == 'full' else 0.03)
                row.update({'2 processes recall@20': two['test']['recall@20'],
                            '2 processes s': t2, 'best epochs (1, 2)': [
                                one['best_epoch'], two['best_epoch']]})
            report['checks'][sampler] = {**row, 'passed': bool(passed)}
            ok &= passed
            print(f"{sampler:<9} " + ' | '.join(
                f'{k} {v}' for k, v in row.items()) +
                f" | {'ok' if passed else 'FAILED'}")
    if not cpu and gpus < 2:
        recall = check_one_process_nccl(args.epochs)
        passed = math.isfinite(recall)
        ok &= passed
        report['checks']['nccl_one_process'] = {'recall@20': recall,
                                                'passed': passed}
        print(f"one GPU: 2-process NCCL not checked (NCCL needs a GPU per "
              f"process); one-process NCCL group + DDP + mini-batch recall@20 "
              f"{recall:.4f} | {'ok' if passed else 'FAILED'}")
    report['passed'] = bool(ok)
    markdown = (f"# 1 vs 2 processes, LightGCN on synthetic, {args.epochs} "
                f"epochs, {report['device']}\n\n" + ''.join(
                    f"- {sampler}: " + '; '.join(
                        f'{k} {v}' for k, v in row.items()) + '\n'
                    for sampler, row in report['checks'].items()))
    write_results(results_path(f'distributed_{args.device}_check'), report,
                  markdown)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
