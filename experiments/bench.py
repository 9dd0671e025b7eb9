"""Speed and memory of the baselines: time per training epoch, full-ranking
evaluation time and peak memory, per model and dataset.

Usage::

    python experiments/bench.py [--data-root ../shared/data]
        [--datasets baby tiktok] [--models pop lightgcn vbpr freedom]
        [--epochs 3]

Each (dataset, model) runs in its own process, so the peak memory is the
model's own, with the model and batch settings of
``experiments/configs/<dataset>.yaml`` where it has them. Baby has no
feature files here: multimodal models run on the real Baby interactions
with synthetic features of MMRec's sizes (image 4096-d, text 384-d),
labelled ``baby+synthetic-features``.
Writes ``experiments/results/bench.json`` and ``bench.md``.
"""
import argparse
import json
import os
import subprocess
import sys

from report import (
    Clock,
    build_and_train,
    model_label,
    results_path,
    write_results,
)

HERE = os.path.dirname(os.path.abspath(__file__))

MMREC_FEATURE_DIMS = {'image': 4096, 'text': 384}


def load(dataset, data_root, model):
    from pyg_mmrec.data import add_synthetic_features, load_dataset, modalities
    from pyg_mmrec.models import get_model
    data = load_dataset(dataset, root=data_root)
    label = dataset
    if get_model(model).requires_features and not modalities(data):
        data = add_synthetic_features(data, MMREC_FEATURE_DIMS, seed=0)
        label = f'{dataset}+synthetic-features'
    return data, label


def worker(model_name, dataset, data_root, epochs, overrides=None,
           threads=1):
    import torch

    from pyg_mmrec.config import find_config, load_config
    from pyg_mmrec.train.records import memory_allocator, peak_memory_mb

    torch.set_num_threads(threads)
    with Clock() as setup:
        data, label = load(dataset, data_root, model_name)
    config_file, _ = find_config(dataset, model_name)
    config = load_config(config_file, model_name) if config_file else {}
    config.update(overrides or {})
    trainer, record, build, epochs_run = build_and_train(
        model_name, data, config, epochs)
    evals = {}
    for split in ('val', 'test'):
        with Clock() as evals[split]:
            trainer.evaluate(split)
    users = int(trainer.evaluator.users('test').numel())
    # the first epoch includes one-off warm-up; report the later ones
    later = epochs_run[1:] or epochs_run
    return {
        'dataset': label, 'model': model_name,
        'batch_size': record['loader']['batch_size'],
        'threads': torch.get_num_threads(),
        'setup_time': setup.wall, 'setup_cpu': setup.cpu,
        'build_time': build.wall, 'build_cpu': build.cpu,
        'epoch_times': [clock.wall for clock in epochs_run],
        'epoch_cpu': [clock.cpu for clock in epochs_run],
        'time_per_epoch': (min(c.wall for c in later) if later else None),
        'cpu_per_epoch': (min(c.cpu for c in later) if later else None),
        'eval_time_test': evals['test'].wall, 'eval_users_test': users,
        'eval_cpu_test': evals['test'].cpu,
        'eval_time_val': evals['val'].wall,
        'peak_memory_mb': peak_memory_mb(),
        'allocator': memory_allocator(),
    }


def to_markdown(rows):
    r"""One line per row: CPU seconds (this process's threads together)
    beside wall seconds, and the thread count the row ran with."""
    lines = ['| dataset | model | batch | threads | CPU s / epoch | '
             'wall s / epoch | eval CPU s (test users) | peak memory MiB | '
             'build s |', '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        def sec(key):
            return '-' if r.get(key) is None else f"{r[key]:.2f}"
        lines.append(
            f"| {r['dataset']} | {model_label(r)} | {r['batch_size']} | "
            f"{r.get('threads', '-')} | {sec('cpu_per_epoch')} | "
            f"{sec('time_per_epoch')} | {sec('eval_cpu_test')} "
            f"({r['eval_users_test']}) | {r['peak_memory_mb']:.0f} | "
            f"{r['build_time']:.2f} |")
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-root', default=os.environ.get(
        'PYG_MMREC_DATA', os.path.join(HERE, '..', '..', 'shared', 'data')))
    parser.add_argument('--datasets', nargs='+', default=['baby', 'tiktok'])
    parser.add_argument('--models', nargs='+',
                        default=['pop', 'lightgcn', 'vbpr', 'freedom'])
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads of every worker (default: 1)')
    parser.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE',
                        help='override a setting of every model (e.g. '
                             'batch_size=512)')
    parser.add_argument('--out', default=results_path('bench'),
                        help='write <out>.json and <out>.md')
    parser.add_argument('--worker', nargs=2, metavar=('MODEL', 'DATASET'),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()

    from pyg_mmrec.config import parse_settings
    overrides = parse_settings(args.set)
    if args.worker:
        row = worker(*args.worker, args.data_root, args.epochs, overrides,
                     args.threads)
        row['overrides'] = overrides
        print(json.dumps(row))
        return

    rows = []
    for dataset in args.datasets:
        for model in args.models:
            cmd = [sys.executable, __file__, '--worker', model, dataset,
                   '--data-root', args.data_root, '--epochs', str(args.epochs),
                   '--threads', str(args.threads),
                   '--set', *args.set]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{model} on {dataset} failed:\n{out.stderr}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(to_markdown([row]).splitlines()[-1], flush=True)
    write_results(args.out, rows, to_markdown(rows))
    print(to_markdown(rows))


if __name__ == '__main__':
    main()
