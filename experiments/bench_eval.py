"""Times a full-ranking evaluation at the size of Amazon Baby.

A random dataset with Baby's shape (19,445 users, 7,050 items, 118,551
training edges, ~20k validation and ~21k test edges, every user has at least
one validation and one test item, so all users are evaluated) and random 64-d
embeddings; reports the median wall time of ``Evaluator.evaluate_embeddings``
per split and batch size, next to the bare matmul + top-k time.

    python experiments/bench_eval.py [--batch-sizes 1024 4096] [--repeats 5]
"""
import argparse
import statistics
import time

import numpy as np
import torch
from report import results_file

from pyg_mmrec.data.hetero import build_hetero_data
from pyg_mmrec.train import Evaluator


def baby_like(num_users=19445, num_items=7050, num_train=118551,
              num_val=20559, num_test=21682, seed=0):
    rng = np.random.default_rng(seed)
    users = np.arange(num_users)
    # One validation and one test item per user, distinct:
    a = rng.integers(0, num_items, num_users)
    b = (a + 1 + rng.integers(0, num_items - 1, num_users)) % num_items
    forced = np.concatenate([users * num_items + a, users * num_items + b])
    forced_split = np.repeat([1, 2], num_users)
    # The remaining edges, drawn without replacement from the other pairs:
    num_extra = num_train + (num_val - num_users) + (num_test - num_users)
    cand = rng.choice(num_users * num_items, 2 * num_extra, replace=False)
    cand = cand[~np.isin(cand, forced)][:num_extra]
    extra_split = np.repeat([0, 1, 2], [
        num_train, num_val - num_users, num_test - num_users])
    key = np.concatenate([forced, cand])
    split = np.concatenate([forced_split, extra_split])
    return build_hetero_data(key // num_items, key % num_items, split,
                             num_users, num_items, name='baby-like')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch-sizes', type=int, nargs='+',
                        default=[512, 1024, 2048, 4096, 8192])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--dim', type=int, default=64)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()

    data = baby_like()
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    user_emb = torch.randn(19445, args.dim, generator=gen).to(device)
    item_emb = torch.randn(7050, args.dim, generator=gen).to(device)
    t0 = time.perf_counter()
    evaluator = Evaluator(data).to(device)
    setup = time.perf_counter() - t0
    print(f"device={device} threads={torch.get_num_threads()} "
          f"Evaluator.__init__: {setup:.3f}s")
    for split in ('val', 'test'):
        print(f"{split}: {evaluator.users(split).numel()} users evaluated")

    for bs in args.batch_sizes:
        evaluator.batch_size = bs
        # Lower bound: scores and top-k only (no masking, no metrics).
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            for start in range(0, user_emb.size(0), bs):
                scores = user_emb[start:start + bs] @ item_emb.t()
                torch.topk(scores, 50, dim=1)
            if device.type == 'cuda':
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        print(f"batch_size={bs:5d} matmul+topk only  "
              f"median={statistics.median(times):.3f}s min={min(times):.3f}s")
        for split in ('val', 'test'):
            evaluator.evaluate_embeddings(user_emb, item_emb, split)  # warm-up
            times = []
            for _ in range(args.repeats):
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                t = time.perf_counter()
                out = evaluator.evaluate_embeddings(user_emb, item_emb, split)
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            print(f"batch_size={bs:5d} split={split:4s} "
                  f"median={statistics.median(times):.3f}s "
                  f"min={min(times):.3f}s recall@20={out['recall@20']:.4f}")


if __name__ == '__main__':
    with results_file('bench_eval.txt'):
        main()
