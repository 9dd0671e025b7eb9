import glob
import json
import os
import statistics

import pytest

from pyg_mmrec.cli import main
from pyg_mmrec.data import load_dataset
from pyg_mmrec.experiment import run_experiment
from pyg_mmrec.report import (
    find_runs,
    format_markdown,
    summarise,
    variant_label,
    variants,
    write_report,
)
from pyg_mmrec.train.trainer import SELECT_ON_TEST_LABEL

FAST = {'epochs': 2, 'embedding_dim': 16}
#: label -> (model, extra settings, seeds)
RUNS = {
    'pop': ('pop', {}, (0, 1)),
    'lightgcn': ('lightgcn', {}, (0, 1)),
    'lightgcn (num_layers=1)': ('lightgcn', {'num_layers': 1}, (0, 1)),
    'lightgcn select-on-test': ('lightgcn', {'select_on': 'test'}, (0, )),
    'lightgcn sampled': ('lightgcn', {'protocol': 'sampled',
                                      'num_negatives': 49}, (0, 1)),
}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('runs')
    data = load_dataset('synthetic')
    dirs = {}
    for i, (key, (model, extra, seeds)) in enumerate(RUNS.items()):
        config = {} if model == 'pop' else {**FAST, **extra}
        dirs[key] = []
        for seed in seeds:
            out = str(root / f'{i}-{model}-seed{seed}')
            run_experiment(model, 'synthetic', config=config, seed=seed,
                           output_dir=out, progress=False, data=data)
            dirs[key].append(out)
    return root, dirs


@pytest.fixture(scope='module')
def report(runs, tmp_path_factory):
    root, _ = runs
    out = tmp_path_factory.mktemp('report')
    return out, write_report(find_runs([str(root / '*')]), str(out))


def read(run_dir):
    with open(os.path.join(run_dir, 'results.json')) as f:
        return json.load(f)


def rows_by_run(report):
    return {run: (table, row) for table in report['tables']
            for row in table['rows'] for run in row['runs']}


def test_mean_and_std_equal_those_of_the_runs_results(runs, report):
    _, dirs = runs
    _, rep = report
    where = rows_by_run(rep)
    for key, run_dirs in dirs.items():
        table, row = where[run_dirs[0]]
        assert sorted(row['runs']) == sorted(run_dirs), key
        assert row['num_seeds'] == len(run_dirs)
        results = [read(d) for d in run_dirs]
        assert row['seeds'] == [r['config']['seed'] for r in results]
        assert row['best_epochs'] == [r['best_epoch'] for r in results]
        for metric in table['metrics']:
            values = [r['test'][metric] for r in results]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            assert row['metrics'][metric]['mean'] == pytest.approx(
                sum(values) / len(values), abs=1e-12)
            assert row['metrics'][metric]['std'] == pytest.approx(std,
                                                                  abs=1e-12)
        assert row['time_per_epoch'] == pytest.approx(statistics.mean(
            r['time_per_epoch'] for r in results))


def test_rows_are_labelled_with_variant_and_protocol(runs, report):
    _, dirs = runs
    _, rep = report
    where = rows_by_run(rep)
    for key in ('pop', 'lightgcn', 'lightgcn (num_layers=1)'):
        table, row = where[dirs[key][0]]
        assert (row['label'], row['selection'], table['protocol']) == (
            key, 'val', 'full')
        assert row['test_mask'] == 'train_val'
    _, row = where[dirs['lightgcn select-on-test'][0]]
    assert row['label'] == 'lightgcn' and row['selection'] == 'test'
    assert 'select-on-test' in row['name']
    text = format_markdown(rep['tables'])
    assert '**test** (select-on-test)' in text and SELECT_ON_TEST_LABEL in text


def test_sampled_protocol_rows_get_their_own_table(runs, report):
    _, dirs = runs
    _, rep = report
    assert [(t['dataset'], t['protocol']) for t in rep['tables']] == [
        ('synthetic', 'full'), ('synthetic', 'sampled')]
    full, sampled = rep['tables']
    assert full['metrics'] == ['recall@20', 'ndcg@20']
    assert sampled['metrics'] == ['hit@10', 'ndcg@10']
    sampled_runs = {r for row in sampled['rows'] for r in row['runs']}
    assert sampled_runs == set(dirs['lightgcn sampled'])
    assert not sampled_runs & {r for row in full['rows'] for r in row['runs']}
    assert [row['protocol'] for row in sampled['rows']] == [
        'sampled: 1 held-out + 49 negatives']
    full_md, sampled_md = format_markdown([full]), format_markdown([sampled])
    assert 'Recall@20' in full_md and 'HR@10' not in full_md
    assert 'HR@10' in sampled_md and 'Recall@20' not in sampled_md


def test_pngs_markdown_and_json_are_written(report):
    out, rep = report
    assert sorted(rep['files']) == sorted(
        ['report.md', 'report.json', 'synthetic_curves.png',
         'synthetic_bars.png', 'synthetic_sampled_curves.png',
         'synthetic_sampled_bars.png'])
    for name in rep['files']:
        if name.endswith('.png'):
            blob = (out / name).read_bytes()
            assert blob[:8] == b'\x89PNG\r\n\x1a\n' and len(blob) > 5000
    assert json.loads((out / 'report.json').read_text()) == rep
    assert (out / 'report.md').read_text() == format_markdown(rep['tables'])


def test_one_seed_rows_print_the_value_without_a_spread(runs, report):
    _, dirs = runs
    _, rep = report
    where = rows_by_run(rep)
    text = format_markdown(rep['tables'])
    for key, one_seed in (('lightgcn select-on-test', True),
                          ('lightgcn', False)):
        _, row = where[dirs[key][0]]
        stat = row['metrics']['recall@20']
        cell = (f"{stat['mean']:.4f} |" if one_seed else
                f"{stat['mean']:.4f} ± {stat['std']:.4f} |")
        line = next(ln for ln in text.splitlines()
                    if ln.startswith(f"| {row['label']} |")
                    and (row['selection'] == 'test') == ('**test**' in ln))
        assert cell in line and ('±' in line) != one_seed, line


def test_variants_show_only_the_settings_off_the_common_value():
    def results(seed, **model):
        return {'config': {'name': 'lightgcn', 'dataset': 'd', 'seed': seed,
                           'model': model, 'trainer': {'lr': 0.01}}}

    runs = [results(0), results(1), results(0, num_layers=1),
            results(0, num_layers=2, embedding_dim=8)]
    assert [variant_label('lightgcn', v) for v in variants(runs)] == [
        'lightgcn', 'lightgcn', 'lightgcn (num_layers=1)',
        'lightgcn (embedding_dim=8, num_layers=2)']
    # The older flat layout: the model name under "model", flat settings.
    old = {'config': {'model': 'lightgcn', 'dataset': 'd', 'seed': 1,
                      'num_layers': 1, 'lr': 0.01, 'select_on': 'val'},
           'selection': 'val', 'test': {'recall@20': 0.5, 'ndcg@20': 0.25},
           'best_epoch': 3, 'time_per_epoch': 1.0}
    new = {**results(0, num_layers=1), 'selection': 'val',
           'test': {'recall@20': 0.3, 'ndcg@20': 0.25}, 'best_epoch': 2,
           'time_per_epoch': 2.0}
    [table] = summarise([old, new])
    [row] = table['rows']
    assert row['label'] == 'lightgcn' and row['seeds'] == [1, 0]
    assert row['metrics']['recall@20']['mean'] == pytest.approx(0.4)


def test_find_runs_expands_globs_and_folders(runs, tmp_path):
    root, dirs = runs
    every = sorted(d for ds in dirs.values() for d in ds)
    assert find_runs([str(root / '*')]) == every
    assert find_runs([str(root)]) == every  # a folder of runs
    assert find_runs([every[0] + '/results.json', every[0]]) == [every[0]]
    with pytest.raises(FileNotFoundError, match='no run directory'):
        find_runs([str(tmp_path / 'nothing*')])


def test_report_cli(runs, tmp_path, capsys):
    root, dirs = runs
    out = tmp_path / 'out'
    assert main(['report', str(root / '*-lightgcn-*'), '--output',
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert '| lightgcn (num_layers=1) | val | train_val |' in text
    assert '| pop |' not in text
    assert len(glob.glob(str(out / '*.png'))) == 4
    assert main(['report', str(tmp_path / 'missing')]) == 2
    assert 'error: ' in capsys.readouterr().err


def test_table_script_uses_the_report_formatting():
    from test_experiments import load_script
    table = load_script('table')
    assert table.format_markdown is format_markdown
    assert not hasattr(table, 'to_markdown')


def test_differing_keys_counts_a_missing_key_as_differing():
    from pyg_mmrec.train.records import differing_keys
    assert differing_keys([{'model': {'a': 1, 'b': None}, 'x': [1]},
                           {'model': {'a': 2}, 'x': [1]},
                           {'model': {'a': 1, 'b': None}, 'x': [1]}]) == [
        'model.a', 'model.b']
    assert differing_keys([{'a': 1}]) == [] and differing_keys([]) == []
