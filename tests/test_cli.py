import json

import pytest

from pyg_mmrec.cli import main, parse_overrides
from pyg_mmrec.experiment import load_config, split_config


def test_parse_overrides_types_and_dashes():
    assert parse_overrides(['--reg-weight', '1e-4', '--num_layers', '2',
                            '--lr=0.01', '--name', 'x']) == {
        'reg_weight': 1e-4, 'num_layers': 2, 'lr': 0.01, 'name': 'x'}
    with pytest.raises(SystemExit, match='needs a value'):
        parse_overrides(['--lr'])


def test_split_config_rejects_unknown_settings():
    model, trainer = split_config('lightgcn', {'num_layers': 2, 'lr': 0.1})
    assert model == {'num_layers': 2} and trainer == {'lr': 0.1}
    with pytest.raises(ValueError, match="unknown setting 'nope'.*num_layers"):
        split_config('lightgcn', {'nope': 1})


def test_load_config_sections(tmp_path):
    path = tmp_path / 'c.yaml'
    path.write_text('lightgcn:\n  num_layers: 2\nfreedom:\n  knn_k: 5\n')
    assert load_config(str(path), 'lightgcn') == {'num_layers': 2}
    with pytest.raises(ValueError, match="none for model 'vbpr'"):
        load_config(str(path), 'vbpr')
    flat = tmp_path / 'flat.yaml'
    flat.write_text('lr: 0.01\n')
    assert load_config(str(flat), 'vbpr') == {'lr': 0.01}
    bad = tmp_path / 'bad.yaml'
    bad.write_text('a: [1,\n')
    with pytest.raises(ValueError, match='bad.yaml: not valid YAML'):
        load_config(str(bad), 'vbpr')


def test_train_prints_the_best_epoch_table_and_writes_results(tmp_path, capsys):
    out = tmp_path / 'run'
    code = main(['train', '--model', 'lightgcn', '--dataset', 'synthetic',
                 '--output-dir', str(out), '--epochs', '2', '--no-progress',
                 '--num-layers', '2'])
    assert code == 0
    text = capsys.readouterr().out
    assert 'best validation epoch' in text and 'recall' in text and '@20' in text
    results = json.loads((out / 'results.json').read_text())
    assert results['config']['num_layers'] == 2
    assert results['epochs_run'] == 2 and results['selection'] == 'val'
    assert f"{results['test']['recall@20']:.4f}" in text


def test_train_select_on_test_is_labelled(tmp_path, capsys):
    code = main(['train', '--model', 'pop', '--dataset', 'synthetic',
                 '--select-on', 'test', '--output-dir', str(tmp_path)])
    assert code == 0
    text = capsys.readouterr().out
    assert 'best TEST epoch' in text and 'paper-reproduction' in text


def test_train_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(['train', '--model', 'nope', '--output-dir', str(tmp_path)]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(['train', '--model', 'lightgcn', '--dataset', 'missing',
                 '--data-root', str(tmp_path), '--output-dir', str(tmp_path)]) == 2
    assert 'missing' in capsys.readouterr().err


def test_models_and_datasets_commands(capsys, tmp_path):
    assert main(['models']) == 0
    text = capsys.readouterr().out
    for name in ('pop', 'lightgcn', 'vbpr', 'freedom'):
        assert name in text
    assert main(['datasets', '--data-root', str(tmp_path)]) == 0
    assert 'synthetic' in capsys.readouterr().out
