"""Benchmark of `python -m pyg_mmrec preprocess` on a synthetic Amazon-2014
review dump: time and peak memory (ru_maxrss) of the streaming reader,
k-core and split, without text features.

    OMP_NUM_THREADS=1 python experiments/bench_preprocess.py [--lines 5000000]

The raw file is generated (streaming, gzipped) under /tmp, never in the
repository; results go to experiments/results/bench_preprocess.{json,md}.
"""
import argparse
import gzip
import os
import os.path as osp
import resource
import tempfile
import time

import numpy as np
from report import RESULTS, write_results

from pyg_mmrec.data.preprocess import preprocess

WORDS = ('great product works well my baby loves it would buy again cheap '
         'quality broke after a week fits perfectly recommended').split()


def power_law_ids(rng, size: int, n: int, exponent: float = 2.0):
    # rank = floor(n * U^exponent): density ~ rank^(1/exponent - 1).
    return np.minimum((n * rng.random(size) ** exponent).astype(np.int64),
                      n - 1)


def generate(path: str, lines: int, users: int, items: int, seed: int = 0,
             chunk: int = 100_000) -> None:
    rng = np.random.default_rng(seed)
    with gzip.open(path, 'wt', compresslevel=1) as f:
        for start in range(0, lines, chunk):
            n = min(chunk, lines - start)
            u = power_law_ids(rng, n, users)
            i = power_law_ids(rng, n, items)
            r = rng.integers(1, 6, n)
            t = rng.integers(1_000_000_000, 1_400_000_000, n)
            w = rng.integers(0, len(WORDS), (n, 8))
            f.writelines(
                f'{{"reviewerID": "A{a:08X}", "asin": "B{b:09d}", '
                f'"reviewerName": "user {a}", "helpful": [0, 0], '
                f'"reviewText": "{" ".join(WORDS[k] for k in ws)}", '
                f'"overall": {c}.0, "summary": "{WORDS[ws[0]]}", '
                f'"unixReviewTime": {d}, "reviewTime": "01 1, 2014"}}\n'
                for a, b, c, d, ws in zip(u.tolist(), i.tolist(), r.tolist(),
                                          t.tolist(), w.tolist()))


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--lines', type=int, default=5_000_000)
    parser.add_argument('--users', type=int, default=400_000)
    parser.add_argument('--items', type=int, default=80_000)
    parser.add_argument('--raw', default=osp.join(tempfile.gettempdir(),
                                                  'bench_reviews.json.gz'))
    parser.add_argument('--results', default=RESULTS,
                        help='folder of bench_preprocess.{json,md}')
    args = parser.parse_args()

    gen_s = None  # None: an existing --raw file was reused
    if not osp.isfile(args.raw):
        t0 = time.perf_counter()
        generate(args.raw, args.lines, args.users, args.items)
        gen_s = time.perf_counter() - t0
    with gzip.open(args.raw, 'rb') as f:  # uncompressed size, streaming
        raw_bytes = sum(len(b) for b in iter(lambda: f.read(1 << 24), b''))
    rss_before = max_rss_mb()
    out = tempfile.mkdtemp(prefix='bench_preprocess_')
    t0 = time.perf_counter()
    stats = preprocess('amazon', args.raw, out, name='bench')
    run_s = time.perf_counter() - t0
    rss_peak = max_rss_mb()
    result = {
        'lines': args.lines, 'raw_file': args.raw,
        'raw_gz_mb': os.path.getsize(args.raw) / 2**20,
        'raw_uncompressed_mb': raw_bytes / 2**20,
        'generate_s': gen_s, 'preprocess_s': run_s,
        'lines_per_s': args.lines / run_s,
        'rss_before_mb': rss_before, 'peak_rss_mb': rss_peak,
        'peak_rss_increase_mb': rss_peak - rss_before,
        'users': stats['users'], 'items': stats['items'],
        'interactions': stats['interactions'],
        'user_pool': args.users, 'item_pool': args.items,
        'k_core_rounds': stats['k_core_rounds'],
        'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
    }
    rows = '\n'.join(f'| {k} | {v:.1f} |' if isinstance(v, float)
                     else f'| {k} | {v} |' for k, v in result.items())
    table = ('# preprocess benchmark (synthetic Amazon 2014 dump, 5-core, '
             'random split, no text features)\n\n| quantity | value |\n'
             f'|---|---|\n{rows}\n')
    write_results(osp.join(args.results, 'bench_preprocess'), result, table)
    print(table)


if __name__ == '__main__':
    main()
