r"""Reports over finished runs: Markdown tables of the test metrics (mean ±
std over seeds), training curves and bar charts (PNG), and
:obj:`report.json` with the same numbers.

Runs are grouped by dataset, then by row: the model and its *variant*
(the settings in which its runs on that dataset differ, *e.g.*
:obj:`rearm (faithful=True)`) and the evaluation protocol (selection on
validation or on test, the test masking rule, full ranking or the sampled
protocol), then by seed. Full-ranking rows report Recall@20 and NDCG@20;
sampled-protocol rows report HR@10 and NDCG@10 in a table of their own:
the two are never mixed.

Example:
    >>> report = write_report(find_runs(['runs/*-tiktok-seed*']), 'report')
    >>> print(format_markdown(report['tables']))

From the command line::

    python -m pyg_mmrec report 'runs/*-tiktok-seed*' --output report
"""
import glob
import logging
import os
import re
import statistics
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .config import SECTIONS
from .experiment import read_results, run_config
from .train.records import differing_keys, flatten_config, write_json
from .train.trainer import SELECT_ON_TEST_LABEL

log = logging.getLogger('pyg_mmrec')

#: The test metrics reported per protocol kind.
TABLE_METRICS = {'full': ('recall@20', 'ndcg@20'),
                 'sampled': ('hit@10', 'ndcg@10')}
#: Settings left out of the variant: the protocol columns show them, or
#: they do not change the numbers.
NOT_VARIANT = ('select_on', 'protocol', 'num_negatives', 'test_masks',
               'eval_batch_size', 'ks')
_DISPLAY = {'recall': 'Recall', 'ndcg': 'NDCG', 'hit': 'HR',
            'precision': 'Precision', 'map': 'MAP'}


def find_runs(patterns: Sequence[str]) -> List[str]:
    r"""The run directories named by :obj:`patterns` (directories,
    :obj:`results.json` files or glob patterns of either), sorted and
    without duplicates; a directory without :obj:`results.json` stands for
    its sub-directories that have one (*e.g.* :obj:`runs/`). What a glob
    pattern matches besides runs (*e.g.* log files) is skipped.

    Raises:
        FileNotFoundError: If a pattern names no run.
    """
    out: List[str] = []
    for pattern in patterns:
        found: List[str] = []
        for path in sorted(glob.glob(os.path.expanduser(pattern))):
            if os.path.basename(path) == 'results.json':
                path = os.path.dirname(path) or '.'
            if os.path.isfile(os.path.join(path, 'results.json')):
                found.append(path)
            else:
                found += sorted(os.path.dirname(p) for p in glob.glob(
                    os.path.join(glob.escape(path), '*', 'results.json')))
        if not found:
            raise FileNotFoundError(
                f"{pattern}: no run directory (a folder with results.json) "
                f"there or in its sub-directories")
        out += [p for p in found if p not in out]
    return out


def run_settings(results: Mapping[str, Any]) -> Dict[str, Any]:
    r"""A run's settings as flat keys without their section
    (:obj:`"faithful"`, :obj:`"lr"`; unique, since a key belongs to one
    section), minus :obj:`NOT_VARIANT`."""
    config = run_config(results)
    flat = flatten_config({s: config[s] for s in SECTIONS})
    return {key.split('.', 1)[1]: value for key, value in flat.items()
            if key.split('.', 1)[1] not in NOT_VARIANT}


#: The variant value of a setting a run does not set.
UNSET = '(default)'


def variants(runs: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    r"""The variant of every run: among the settings that differ between
    the runs of the same model on the same dataset (see
    :func:`~pyg_mmrec.train.trainer.differing_keys`), those where the run's
    value is not the most common one (ties: unset, else the first run's);
    :obj:`UNSET` where the run does not set it.

    Example:
        >>> # fmcns runs: 3 default, 3 with faithful=True, 3 with flow_weight=0
        >>> [variant_label('fmcns', v) for v in variants(runs)][::3]
        ['fmcns', 'fmcns (faithful=True)', 'fmcns (flow_weight=0)']
    """
    configs = [run_config(r) for r in runs]
    settings = [run_settings(r) for r in runs]
    groups: Dict[Tuple[str, str], List[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault((c['name'], str(c['dataset'])), []).append(i)
    out: List[Dict[str, Any]] = [{} for _ in runs]
    for members in groups.values():
        for key in differing_keys([settings[i] for i in members]):
            values = [repr(settings[i][key]) if key in settings[i] else None
                      for i in members]
            counts = {v: values.count(v) for v in values}  # first-seen order
            top = max(counts.values())
            common = None if counts.get(None) == top else next(
                v for v, c in counts.items() if c == top)
            for i, value in zip(members, values):
                if value != common:
                    out[i][key] = settings[i].get(key, UNSET)
    return out


def _value(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def variant_label(model: str, variant: Mapping[str, Any]) -> str:
    r"""The row label of a model and its variant, *e.g.*
    :obj:`"rearm (faithful=True)"`."""
    if not variant:
        return model
    settings = ', '.join(f'{k}={_value(v)}' for k, v in variant.items())
    return f"{model} ({settings})"


def protocol_kind(results: Mapping[str, Any]) -> str:
    r""":obj:`"sampled"` for the sampled protocol, else :obj:`"full"`."""
    protocol = results.get('protocol', 'full ranking')
    return 'sampled' if protocol.startswith('sampled') else 'full'


def metric_name(metric: str) -> str:
    r"""The display name of a metric key, *e.g.* :obj:`"HR@10"` for
    :obj:`"hit@10"`."""
    name, _, k = metric.partition('@')
    return f"{_DISPLAY.get(name, name)}@{k}"


def _mean_std(values: List[Optional[float]]) -> Dict[str, Any]:
    if not values or any(v is None for v in values):
        return {'mean': None, 'std': None, 'values': values}
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {'mean': statistics.mean(values), 'std': std, 'values': values}


def summarise(runs: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    r"""Groups runs' results (see :func:`pyg_mmrec.experiment.read_results`)
    into tables, one per dataset and protocol kind (full ranking, then
    sampled), each with one row per model variant and evaluation protocol:
    the mean and (sample) standard deviation over its seeds of the test
    metrics of :obj:`TABLE_METRICS` at the selected epoch, its seeds, best
    epochs, mean time per epoch and run directories."""
    tables: Dict[Tuple[str, str], Dict[str, Any]] = {}
    rows: Dict[Tuple, Dict[str, Any]] = {}
    for results, variant in zip(runs, variants(runs)):
        config = run_config(results)
        kind = protocol_kind(results)
        dataset = str(config['dataset'])
        table = tables.setdefault((dataset, kind), {
            'dataset': dataset, 'protocol': kind,
            'metrics': list(TABLE_METRICS[kind]), 'rows': []})
        row_fields = {
            'label': variant_label(config['name'], variant),
            'model': config['name'], 'variant': variant,
            'selection': 'val' if results.get('selection', 'val') == 'val'
            else 'test',
            'test_mask': (results.get('test_mask', 'train_val')
                          if kind == 'full' else None),
            'protocol': results.get('protocol', 'full ranking')}
        key = (dataset, kind) + tuple(_value(row_fields[f]) for f in (
            'label', 'selection', 'test_mask', 'protocol'))
        if key not in rows:
            rows[key] = {**row_fields, 'seeds': [], 'runs': [],
                         'results': []}
            table['rows'].append(rows[key])
        row = rows[key]
        if config['seed'] in row['seeds']:
            log.warning("%s: seed %s appears twice in row '%s'",
                        dataset, config['seed'], row['label'])
        row['seeds'].append(config['seed'])
        row['runs'].append(results.get('run_dir'))
        row['results'].append(results)
    out = []
    for dataset, kind in sorted(tables, key=lambda k: (k[0], k[1] != 'full')):
        table = tables[(dataset, kind)]
        for row in table['rows']:
            res = row.pop('results')
            row['num_seeds'] = len(row['seeds'])
            row['metrics'] = {m: _mean_std([r.get('test', {}).get(m)
                                            for r in res])
                              for m in table['metrics']}
            row['best_epochs'] = [r.get('best_epoch') for r in res]
            row['diverged'] = sum(1 for r in res if r.get('diverged'))
            row['time_per_epoch'] = statistics.mean(
                r.get('time_per_epoch', 0.0) for r in res)
        table['rows'].sort(key=lambda r: (r['label'], r['selection'],
                                          str(r['test_mask']), r['protocol']))
        _name_rows(table['rows'])
        out.append(table)
    return out


def _name_rows(rows: List[Dict[str, Any]]) -> None:
    # Unique names for the figures: the label, with the protocol fields in
    # which rows of the same label differ.
    by_label: Dict[str, List[Dict[str, Any]]] = {}
    for row in rows:
        by_label.setdefault(row['label'], []).append(row)
    for group in by_label.values():
        fields = [f for f in ('selection', 'test_mask', 'protocol')
                  if len({str(r[f]) for r in group}) > 1]
        for row in group:
            parts = [('select-on-test' if row[f] == 'test' else
                      'select-on-val') if f == 'selection' else
                     f'test mask {row[f]}' if f == 'test_mask' else row[f]
                     for f in fields]
            row['name'] = row['label'] + (f" [{', '.join(parts)}]"
                                          if parts else '')


def _cell(stat: Mapping[str, Any]) -> str:
    if stat['mean'] is None:
        return 'n/a'
    if len(stat['values']) == 1:  # one seed: no spread to show
        return f"{stat['mean']:.4f}"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}"


def format_table(table: Mapping[str, Any]) -> str:
    r"""One table as Markdown: a title naming the dataset and the protocol,
    one line per row."""
    metrics = table['metrics']
    sampled = table['protocol'] == 'sampled'
    title = (f"{table['dataset']}: test metrics at the selected epoch, mean "
             f"± std over seeds (one seed: its value), "
             + ('sampled protocol (1 held-out item against sampled '
                'negatives; not comparable with full ranking)' if sampled
                else 'full ranking over all items'))
    third = 'protocol' if sampled else 'test mask'
    lines = [title, '',
             f"| model | selection | {third} | "
             + ' | '.join(metric_name(m) for m in metrics)
             + ' | seeds | best epochs | s / epoch |',
             '|---' * (len(metrics) + 6) + '|']
    for row in table['rows']:
        selection = ('**test** (select-on-test)' if row['selection'] == 'test'
                     else 'val')
        cells = ' | '.join(_cell(row['metrics'][m]) for m in metrics)
        label = row['label'] + (
            f" **diverged** ({row['diverged']} of {row['num_seeds']})"
            if row.get('diverged') else '')
        lines.append(
            f"| {label} | {selection} | "
            f"{row['protocol'] if sampled else row['test_mask']} | {cells} | "
            f"{row['num_seeds']} | {', '.join(map(str, row['best_epochs']))} "
            f"| {row['time_per_epoch']:.2f} |")
    if any(row['selection'] == 'test' for row in table['rows']):
        lines += ['', f"**test**: {SELECT_ON_TEST_LABEL}."]
    if any(row.get('diverged') for row in table['rows']):
        lines += ['', "**diverged**: runs that stopped on a loss or score "
                  "that was not finite; their metrics are those of the best "
                  "epoch before it (see each run's results.json)."]
    if any(row['test_mask'] == 'train' for row in table['rows']):
        lines += ['', "test mask 'train': the test pass masks the training "
                  "items only (MMRec/DiffMM rule); 'train_val' also masks "
                  "the validation items."]
    return '\n'.join(lines) + '\n'


def format_markdown(tables: Sequence[Mapping[str, Any]]) -> str:
    r"""All tables as one Markdown document."""
    return '\n'.join(format_table(t) for t in tables)


def _file_stem(table: Mapping[str, Any]) -> str:
    stem = re.sub(r'[^\w.-]+', '_', table['dataset'])
    return stem if table['protocol'] == 'full' else f'{stem}_sampled'


def _save(fig: Figure, path: str) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)


def plot_curves(table: Mapping[str, Any],
                runs: Mapping[str, Mapping[str, Any]], path: str) -> None:
    r"""Training curves of a table's runs as a PNG: one panel per loss term
    and one of the validation selection metric (the table's first metric)
    per epoch, one line per run, one colour per row.

    Args:
        table (Mapping): A table of :func:`summarise`.
        runs (Mapping): Run directory -> its results (with the
            :obj:`"history"`).
        path (str): The PNG file.
    """
    metric = table['metrics'][0]
    terms: List[str] = []
    for row in table['rows']:
        for run in row['runs']:
            for record in runs[run].get('history', []):
                terms += [t for t in record.get('losses', {})
                          if t not in terms]
    panels = sorted(terms, key=lambda t: t != 'loss') + [f'val {metric}']
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(5 * ncols, 3.5 * nrows))
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(len(panels))]
    colours = [f'C{i % 10}' for i in range(len(table['rows']))]
    for row, colour in zip(table['rows'], colours):
        for j, run in enumerate(row['runs']):
            history = runs[run].get('history', [])
            label = row['name'] if j == 0 else None
            for ax, panel in zip(axes, panels):
                if panel.startswith('val '):
                    points = [(r['epoch'], r['val'][metric]) for r in history
                              if metric in r.get('val', {})]
                else:
                    points = [(r['epoch'], r['losses'][panel]) for r in history
                              if panel in r.get('losses', {})]
                if points:
                    x, y = zip(*points)
                    ax.plot(x, y, color=colour, marker='.' if len(x) < 3
                            else None, label=label, alpha=0.8)
    for ax, panel in zip(axes, panels):
        ax.set_title(metric_name(panel[4:]) + ' (validation)'
                     if panel.startswith('val ') else f'loss: {panel}')
        ax.set_xlabel('epoch')
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize='small')
    fig.suptitle(f"{table['dataset']}: training curves")
    fig.tight_layout()
    _save(fig, path)


def plot_bars(table: Mapping[str, Any], path: str) -> None:
    r"""A bar chart of a table's rows as a PNG: the mean of its first metric
    over the seeds, with the standard deviation as error bars."""
    metric = table['metrics'][0]
    rows = [r for r in table['rows']
            if r['metrics'][metric]['mean'] is not None]
    fig = Figure(figsize=(max(4.0, 1.2 * len(rows) + 2), 4.5))
    ax = fig.add_subplot(1, 1, 1)
    x = list(range(len(rows)))
    ax.bar(x, [r['metrics'][metric]['mean'] for r in rows],
           yerr=[r['metrics'][metric]['std'] for r in rows], capsize=4,
           color=[f'C{i % 10}' for i in x])
    ax.set_xticks(x)
    ax.set_xticklabels([r['name'] for r in rows], rotation=30, ha='right',
                       fontsize='small')
    ax.set_ylabel(f"test {metric_name(metric)} (mean ± std)")
    protocol = ('sampled protocol' if table['protocol'] == 'sampled'
                else 'full ranking')
    ax.set_title(f"{table['dataset']} ({protocol})")
    ax.grid(axis='y', alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def write_report(run_dirs: Sequence[str], output: str) -> Dict[str, Any]:
    r"""Reads the runs, writes :obj:`report.md`, :obj:`report.json` and per
    table :obj:`<dataset>[_sampled]_curves.png` and
    :obj:`<dataset>[_sampled]_bars.png` into :obj:`output`, and returns the
    report: :obj:`{'tables': [...], 'files': [...]}` (the tables of
    :func:`summarise`, the files relative to :obj:`output`).

    Args:
        run_dirs (Sequence[str]): Run directories (see :func:`find_runs`).
        output (str): The output folder (created if needed).
    """
    if not run_dirs:
        raise ValueError("no run directories to report")
    runs = {d: read_results(d) for d in run_dirs}
    searched = [d for d, r in runs.items() if r.get('test') is None]
    if searched:  # a tune study's trials: validation only, no test
        log.info("left out %d runs without test metrics (search trials; "
                 "report their study folder instead): %s", len(searched),
                 ', '.join(searched[:3]) + (' ...' if len(searched) > 3
                                             else ''))
        runs = {d: r for d, r in runs.items() if d not in searched}
    if not runs:
        raise ValueError("no run with test metrics to report (search trials "
                         "have none: report their study folder)")
    tables = summarise(list(runs.values()))
    os.makedirs(output, exist_ok=True)
    files = ['report.md', 'report.json']
    for table in tables:
        stem = _file_stem(table)
        plot_curves(table, runs, os.path.join(output, f'{stem}_curves.png'))
        plot_bars(table, os.path.join(output, f'{stem}_bars.png'))
        files += [f'{stem}_curves.png', f'{stem}_bars.png']
    report = {'tables': tables, 'files': files}
    with open(os.path.join(output, 'report.md'), 'w') as f:
        f.write(format_markdown(tables))
    write_json(report, os.path.join(output, 'report.json'))
    return report
