"""Speed and memory of GenRec-V1: a TikTok epoch split into the denoiser
stage, the graph generation and the recommender's batches, the evaluation
time and the peak memory; and the peak memory of an epoch on a Sports-size
synthetic graph (35,598 users, 18,357 items, ~300k interactions, MMRec's
Sports feature sizes: image 4096-d, text 384-d).

Usage::

    OMP_NUM_THREADS=1 python experiments/bench_genrec.py
        [--data-root ../shared/data] [--epochs 2] [--sports-batches 40]

Each part runs in its own process (its peak memory is its own), with the
settings of ``experiments/configs/tiktok.yaml`` (``genrec:``) and their
Sports counterparts. The Sports-size epoch runs the denoiser stage and the
generation in full and the recommender for its first ``--sports-batches``
batches (memory per batch is constant; the time is extrapolated to the
full epoch and labelled so). Writes ``experiments/results/bench_genrec.json``
and ``bench_genrec.md``.
"""
import argparse
import json
import os
import subprocess
import sys
import time

from report import results_path, write_results

HERE = os.path.dirname(os.path.abspath(__file__))

SPORTS = dict(num_users=35598, num_items=18357,
              mean_interactions=300000 / 35598,
              modalities={'image': 4096, 'text': 384})


def timed(fn, log):
    r""":obj:`fn` wrapped to append the seconds of every call to
    :obj:`log`."""
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        log.append(time.perf_counter() - t0)
        return out
    return wrapper


def worker(part, data_root, epochs, sports_batches):
    import torch

    from pyg_mmrec.config import load_config
    from pyg_mmrec.data import load_dataset, make_synthetic
    from pyg_mmrec.experiment import build_trainer
    from pyg_mmrec.train.records import memory_allocator, peak_memory_mb

    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    t0 = time.perf_counter()
    if part == 'tiktok':
        data = load_dataset('tiktok', root=data_root)
        config = load_config(os.path.join(HERE, 'configs', 'tiktok.yaml'),
                             'genrec')
    else:
        data = make_synthetic(**SPORTS, seed=0, name='sports-size')
        config = load_config(os.path.join(HERE, 'configs', 'sports.yaml'),
                             'genrec')
    load_time = time.perf_counter() - t0
    t0 = time.perf_counter()
    trainer, _ = build_trainer('genrec', data, config, seed=0, progress=False)
    build_time = time.perf_counter() - t0
    model = trainer.net
    # The denoiser stage ends by regenerating the graph (its after()).
    (stage, ) = trainer.stages
    generation, stage_times = [], []
    stage.after = timed(stage.after, generation)
    trainer.run_stage = timed(trainer.run_stage, stage_times)
    max_batches = None if part == 'tiktok' else sports_batches
    rows = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        losses = trainer.train_epoch(epoch, max_batches=max_batches)
        total = time.perf_counter() - t0
        rows.append({'epoch': epoch, 'total': total,
                     'denoiser': stage_times[-1] - generation[-1],
                     'generation': generation[-1],
                     'recommender': total - stage_times[-1],
                     'losses': losses})
    eval_times = {}
    for split in ('val', 'test'):
        t0 = time.perf_counter()
        trainer.evaluate(split)
        eval_times[split] = time.perf_counter() - t0
    num_batches = len(trainer.source)
    train_mask = data['user', 'interacts', 'item'].train_mask
    return {
        'part': part, 'users': model.num_users, 'items': model.num_items,
        'train_interactions': int(train_mask.sum()),
        'modalities': model.modalities,
        'threads': torch.get_num_threads(), 'load_time': load_time,
        'build_time': build_time, 'epochs': rows,
        'recommender_batches_run': (num_batches if max_batches is None
                                    else min(max_batches, num_batches)),
        'recommender_batches_per_epoch': num_batches,
        'eval_time_val': eval_times['val'],
        'eval_time_test': eval_times['test'],
        'peak_memory_mb': peak_memory_mb(), 'allocator': memory_allocator(),
    }


def to_markdown(rows):
    lines = ['| graph | epoch | denoiser s | generation s | recommender s | '
             'epoch s | eval s (val / test) | peak MiB |',
             '|---|---|---|---|---|---|---|---|']
    for r in rows:
        for e in r['epochs']:
            rec = e['recommender']
            note = ''
            if (r['recommender_batches_run'] <
                    r['recommender_batches_per_epoch']):
                scale = (r['recommender_batches_per_epoch'] /
                         r['recommender_batches_run'])
                note = (f" ({r['recommender_batches_run']} of "
                        f"{r['recommender_batches_per_epoch']} batches; "
                        f"full epoch ~{rec * scale:.0f})")
                total = e['denoiser'] + e['generation'] + rec * scale
            else:
                total = e['total']
            lines.append(
                f"| {r['part']} ({r['users']} x {r['items']}, "
                f"{r['train_interactions']} train) | {e['epoch']} | "
                f"{e['denoiser']:.1f} | {e['generation']:.1f} | "
                f"{rec:.1f}{note} | {total:.1f} | "
                f"{r['eval_time_val']:.1f} / {r['eval_time_test']:.1f} | "
                f"{r['peak_memory_mb']:.0f} |")
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-root', default=os.environ.get(
        'PYG_MMREC_DATA', os.path.join(HERE, '..', '..', 'shared', 'data')))
    parser.add_argument('--parts', nargs='+', default=['tiktok', 'sports'])
    parser.add_argument('--epochs', type=int, default=2)
    parser.add_argument('--sports-batches', type=int, default=40)
    parser.add_argument('--out', default=results_path('bench_genrec'),
                        help='write <out>.json and <out>.md')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data_root, args.epochs,
                                args.sports_batches)))
        return
    rows = []
    for part in args.parts:
        epochs = args.epochs if part == 'tiktok' else 1
        cmd = [sys.executable, __file__, '--worker', part, '--data-root',
               args.data_root, '--epochs', str(epochs),
               '--sports-batches', str(args.sports_batches)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{part} failed:\n{out.stderr}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(to_markdown(rows[-1:]), flush=True)
    write_results(args.out, rows, to_markdown(rows))
    print(to_markdown(rows))


if __name__ == '__main__':
    main()
