"""Both model-selection protocols from the same runs: the honest one (the
test metrics at the best validation epoch, with early stopping replayed on
the validation history) and, labelled, the DiffMM-family papers' (the best
test epoch).

Training never depends on evaluation, so one run trained with
``--select-on test --patience <epochs>`` (validation and test evaluated every
epoch) gives both. Usage::

    python experiments/protocols.py runs/mdmns-tiktok-seed0 ... \\
        [--patience 20] [--max-epochs 25] [--name tiktok_mdmns]

``--max-epochs`` reads only the first epochs of every run, so runs that
were stopped at different points are compared on the same budget.

A run folder is read from its ``results.json``, or from ``last.pt`` while it
is still training. Writes ``experiments/results/<name>_protocols.{json,md}``.
"""
import argparse
import os
import statistics

from pyg_mmrec.experiment import read_results
from pyg_mmrec.train.checkpoint import load_checkpoint
from pyg_mmrec.train.trainer import SELECT_ON_TEST_LABEL

METRIC = 'recall@20'
REPORTED = ('recall@20', 'ndcg@20')


def load_history(run_dir):
    r"""The per-epoch history of a run folder: from its
    :obj:`results.json` (:func:`~pyg_mmrec.experiment.read_results`), or
    from its :obj:`last.pt` checkpoint while it still trains."""
    if os.path.exists(os.path.join(run_dir, 'results.json')):
        return read_results(run_dir)['history']
    return load_checkpoint(os.path.join(run_dir, 'last.pt'),
                           keys=('history', ))['history']


def select(history, patience, max_epochs=None):
    r"""Returns the records chosen by the two protocols among the evaluated
    epochs up to :obj:`max_epochs`, and how many there were."""
    records = [r for r in history if 'val' in r and 'test' in r and (
        max_epochs is None or r['epoch'] <= max_epochs)]
    if not records:
        raise ValueError('no epoch with both validation and test metrics')
    best, bad = None, 0
    for r in records:  # early stopping replayed on validation
        if best is None or r['val'][METRIC] > best['val'][METRIC]:
            best, bad = r, 0
        else:
            bad += 1
            if bad >= patience:
                break
    paper = max(records, key=lambda r: r['test'][METRIC])
    return best, paper, len(records)


def mean_std(values):
    r"""The mean and sample standard deviation (0 for one value)."""
    return (statistics.mean(values),
            statistics.stdev(values) if len(values) > 1 else 0.0)


def main():
    # Imported here: the tests load this file without experiments/ on the
    # path.
    from report import RESULTS, write_results

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('runs', nargs='+')
    parser.add_argument('--patience', type=int, default=20)
    parser.add_argument('--max-epochs', type=int, default=None)
    parser.add_argument('--name', default='protocols')
    parser.add_argument('--out-dir', default=RESULTS)
    args = parser.parse_args()

    rows = []
    for run in args.runs:
        honest, paper, epochs = select(load_history(run), args.patience,
                                      args.max_epochs)
        rows.append({'run': run, 'epochs': epochs,
                     'val_selected': {'epoch': honest['epoch'],
                                      'test': honest['test']},
                     'test_selected': {'epoch': paper['epoch'],
                                       'test': paper['test']}})
    lines = [f"| protocol | {' | '.join(m for m in REPORTED)} | epochs "
             f"(of {', '.join(str(r['epochs']) for r in rows)}) |",
             '|---|' + '---|' * (len(REPORTED) + 1)]
    for key, label in (('val_selected', 'best validation epoch (honest)'),
                       ('test_selected', SELECT_ON_TEST_LABEL)):
        cells = []
        for m in REPORTED:
            mean, std = mean_std([r[key]['test'][m] for r in rows])
            cells.append(f'{mean:.4f} ± {std:.4f}' if len(rows) > 1 else
                         f'{mean:.4f}')  # one run: no spread to show
        epochs = ', '.join(str(r[key]['epoch']) for r in rows)
        lines.append(f"| {label} | {' | '.join(cells)} | {epochs} |")
    table = '\n'.join(lines) + '\n'
    write_results(os.path.join(args.out_dir, f'{args.name}_protocols'), rows,
                  table)
    print(table)


if __name__ == '__main__':
    main()
