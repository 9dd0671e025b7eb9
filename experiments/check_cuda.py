"""Checks the CUDA paths on a GPU machine (never run in CI): the kNN item
graphs are built on the GPU by torch-cluster when a model is trained with
``device='cuda'``, they match the CPU build, the projected search
(``max_dim``, exact re-ranking by ``torch.sparse.sampled_addmm``) gives exact
similarities and the CPU's neighbours on the GPU, REARM's coordinate
attention draws the same dropout masks again in its backward pass from the
CUDA generator (gradients equal autograd's on those masks), and every
registered model trains and evaluates on the GPU (with the fused optimisers).

Usage (on a machine with a GPU)::

    python experiments/check_cuda.py [--epochs 2]

Prints one line per check and writes ``experiments/results/cuda_check.json``.
Exits 1 when a check fails, 2 when no GPU is present.
"""
import argparse
import math
import sys
import time

import torch
from report import results_path, write_results

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.experiment import run_experiment
from pyg_mmrec.graphs import knn as knn_module
from pyg_mmrec.models import MODELS, get_model
from pyg_mmrec.nn.attention import CoordinateAttention, dropout_keep_mask


def count_cluster_calls():
    r"""Wraps the torch-cluster back-end of the kNN graphs and returns the
    list the devices of its inputs are appended to."""
    calls = []
    original = knn_module._knn_cluster

    def wrapped(x, *args, **kwargs):
        calls.append(str(x.device))
        return original(x, *args, **kwargs)

    knn_module._knn_cluster = wrapped
    return calls


def item_graph_agreement(data):
    r"""Share of FREEDOM's item-graph entries (row, column) that the GPU
    (torch-cluster) and CPU (matmul) builds have in common; ties among equal
    similarities may be broken differently."""
    def entries(device):
        torch.manual_seed(0)
        model = get_model('freedom')(data.clone().to(device))
        adj = model.item_graph.to_sparse_coo().coalesce().cpu()
        return set(map(tuple, adj.indices().t().tolist()))
    cpu, gpu = entries('cpu'), entries('cuda')
    return len(cpu & gpu) / max(len(cpu), 1)


def projected_knn_check(k=10, max_dim=16):
    r"""On GPU, :func:`~pyg_mmrec.graphs.knn_graph` with :obj:`max_dim`: the
    largest error of its similarities against the exact cosine of the
    returned pairs, and the share of its neighbours the CPU build also
    finds (both searches are seeded, on different devices' generators)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1500, 24, generator=gen) @ torch.randn(24, 256,
                                                           generator=gen)
    (row, col), sim = knn_module.knn_graph(x.cuda(), k, max_dim=max_dim)
    unit = torch.nn.functional.normalize(x.cuda(), dim=-1)
    error = (sim - (unit[row] * unit[col]).sum(-1)).abs().max().item()
    cpu = knn_module.knn_graph(x, k, max_dim=max_dim)[0][1].view(-1, k)
    gpu = col.cpu().view(-1, k)
    overlap = (gpu[:, :, None] == cpu[:, None]).any(-1).float().mean().item()
    return error, overlap


def attention_dropout_check(n=300, d=16, chunk=64, p=0.3):
    r"""On GPU, the largest gradient difference between
    :class:`~pyg_mmrec.nn.CoordinateAttention` (whose backward pass draws the
    dropout masks again from a copy of the CUDA generator's state) and
    autograd through the dense formula on masks drawn from the same seed,
    and whether the global CUDA stream after backward is the one without
    it."""
    torch.manual_seed(0)
    module = CoordinateAttention(dropout=p, bias='query',
                                 chunk_size=chunk).cuda().train()
    with torch.no_grad():
        module.in_bias.normal_()
    x = torch.randn(n, d, device='cuda', requires_grad=True)
    grad = torch.randn(n, d, device='cuda')
    torch.cuda.manual_seed(7)
    got = torch.autograd.grad(module(x), (x, module.in_weight), grad)
    after = torch.rand(4, device='cuda')
    torch.cuda.manual_seed(7)
    masks = [dropout_keep_mask((len(rows), d, d), p, x.device)
             for rows in torch.arange(n).split(chunk)]
    stream_ok = torch.equal(torch.rand(4, device='cuda'), after)
    a, b = module.in_weight, module.in_bias
    q, k, v = a[0] * x + b[0], a[1] * x, a[2] * x
    weight = torch.softmax(q.unsqueeze(-1) * k.unsqueeze(-2), dim=-1)
    weight = weight * torch.cat([m for m, _ in masks]) * masks[0][1]
    out = module.out_weight * (weight @ v.unsqueeze(-1)).squeeze(-1)
    want = torch.autograd.grad(out, (x, module.in_weight), grad)
    error = max((g - w).abs().max().item() for g, w in zip(got, want))
    return error, stream_ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=2)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print('no CUDA device: nothing to check')
        return 2
    calls = count_cluster_calls()
    data = make_synthetic(num_users=2000, num_items=1500, seed=0)
    report = {'device': torch.cuda.get_device_name(0), 'models': {}}
    ok = True
    for name in MODELS:
        before = len(calls)
        t0 = time.perf_counter()
        res = run_experiment(name, 'synthetic', data=data.clone(),
                             device='cuda', progress=False,
                             config={'epochs': args.epochs, 'lr': 5e-3,
                                     'batch_size': 2048})
        recall = res['test']['recall@20']
        knn_on_gpu = [d for d in calls[before:] if d.startswith('cuda')]
        needs_knn = name in ('freedom', 'fmcns')
        passed = math.isfinite(recall) and (bool(knn_on_gpu) or not needs_knn)
        ok &= passed
        report['models'][name] = {
            'recall@20': recall, 'seconds': time.perf_counter() - t0,
            'torch_cluster_calls_on_gpu': len(knn_on_gpu), 'passed': passed}
        print(f"{name:<10} recall@20 {recall:.4f} | torch-cluster kNN "
              f"calls on GPU {len(knn_on_gpu)} | "
              f"{'ok' if passed else 'FAILED'}")
    agreement = item_graph_agreement(data)
    report['freedom_item_graph_cpu_gpu_agreement'] = agreement
    ok &= agreement > 0.99
    print(f"FREEDOM item graph: {agreement:.4%} of the entries agree between "
          f"the GPU (torch-cluster) and CPU (matmul) builds")
    error, overlap = projected_knn_check()
    report['projected_knn'] = {'max_similarity_error': error,
                               'cpu_neighbour_overlap': overlap}
    ok &= error < 1e-4 and overlap > 0.95
    print(f"projected kNN on GPU: similarity error {error:.2e}, "
          f"{overlap:.2%} of the neighbours as on the CPU")
    error, stream_ok = attention_dropout_check()
    report['attention_dropout'] = {'max_gradient_error': error,
                                   'global_stream_unchanged': stream_ok}
    ok &= error < 1e-4 and stream_ok
    print(f"coordinate attention on GPU: gradient error {error:.2e} against "
          f"autograd on the regenerated masks, global CUDA stream "
          f"{'unchanged' if stream_ok else 'CHANGED'}")
    report['passed'] = bool(ok)
    write_results(results_path('cuda_check'), report)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
