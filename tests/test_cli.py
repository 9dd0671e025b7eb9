import json
import os
import re

import pytest
import torch

from pyg_mmrec.cli import main, parse_overrides
from pyg_mmrec.config import load_config, resolve_config
from pyg_mmrec.models import MODELS


def test_parse_overrides_types_and_dashes():
    assert parse_overrides(['--reg-weight', '1e-4', '--num_layers', '2',
                            '--lr=0.01', '--name', 'x']) == {
        'reg_weight': 1e-4, 'num_layers': 2, 'lr': 0.01, 'name': 'x'}
    assert parse_overrides(['--model.num-layers', '3',
                            '--trainer.lr=0.5']) == {
        'model.num_layers': 3, 'trainer.lr': 0.5}
    with pytest.raises(ValueError, match='needs a value'):
        parse_overrides(['--lr'])


def test_resolve_config_rejects_unknown_settings():
    sections = resolve_config('lightgcn', {'num_layers': 2, 'lr': 0.1})
    assert sections == {'model': {'num_layers': 2}, 'trainer': {'lr': 0.1},
                        'loader': {}, 'evaluation': {}}
    with pytest.raises(ValueError, match="unknown setting 'nope'.*num_layers"):
        resolve_config('lightgcn', {'nope': 1})


def test_load_config_sections(tmp_path):
    path = tmp_path / 'c.yaml'
    path.write_text('lightgcn:\n  model: {num_layers: 2}\n  lr: 0.5\n'
                    'freedom:\n  model: {knn_k: 5}\n')
    assert load_config(str(path), 'lightgcn') == {
        'model': {'num_layers': 2}, 'trainer': {'lr': 0.5}, 'loader': {},
        'evaluation': {}}
    with pytest.raises(ValueError, match="none for model 'vbpr'"):
        load_config(str(path), 'vbpr')
    flat = tmp_path / 'flat.yaml'
    flat.write_text('lr: 0.01\n')  # not one mapping per model
    with pytest.raises(ValueError, match="flat.yaml: top-level keys must be "
                       "model names.*unknown: lr"):
        load_config(str(flat), 'vbpr')
    bad = tmp_path / 'bad.yaml'
    bad.write_text('a: [1,\n')
    with pytest.raises(ValueError, match='bad.yaml: not valid YAML'):
        load_config(str(bad), 'vbpr')


def test_train_prints_the_best_epoch_table_and_writes_results(tmp_path, capsys,
                                                              caplog):
    caplog.set_level('INFO', logger='pyg_mmrec')
    out = tmp_path / 'run'
    code = main(['train', '--model', 'lightgcn', '--dataset', 'synthetic',
                 '--output-dir', str(out), '--epochs', '2', '--no-progress',
                 '--num-layers', '2'])
    assert code == 0
    text = capsys.readouterr().out
    assert ('best validation epoch' in text and 'recall' in text and
            '@20' in text)
    results = json.loads((out / 'results.json').read_text())
    # every setting is recorded, with its default where none was given
    assert results['config']['model'] == {'embedding_dim': 64,
                                          'num_layers': 2, 'reg_weight': 1e-4}
    assert results['config']['trainer']['epochs'] == 2
    assert results['config']['trainer']['lr'] == 1e-3
    assert results['config']['evaluation']['metric'] == 'recall@20'
    assert len(results['config_hash']) == 8
    assert results['model_repr'].startswith('LightGCN(')
    assert 'settings of lightgcn on synthetic' in caplog.text  # at start
    assert f"(config {results['config_hash']})" in caplog.text
    assert results['config']['name'] == 'lightgcn'
    assert results['epochs_run'] == 2 and results['selection'] == 'val'
    assert f"{results['test']['recall@20']:.4f}" in text


def test_train_select_on_test_is_labelled(tmp_path, capsys):
    code = main(['train', '--model', 'pop', '--dataset', 'synthetic',
                 '--select-on', 'test', '--output-dir', str(tmp_path)])
    assert code == 0
    text = capsys.readouterr().out
    assert 'best TEST epoch' in text and 'paper-reproduction' in text


def test_train_with_the_sampled_protocol_says_so(tmp_path, capsys):
    code = main(['train', '--model', 'lightgcn', '--dataset', 'synthetic',
                 '--config', 'none', '--epochs', '2', '--protocol', 'sampled',
                 '--num-negatives', '49', '--no-progress',
                 '--output-dir', str(tmp_path)])
    assert code == 0
    text = capsys.readouterr().out
    assert '[evaluation protocol: sampled: 1 held-out + 49 negatives]' in text
    results = json.loads((tmp_path / 'results.json').read_text())
    assert results['protocol'] == 'sampled: 1 held-out + 49 negatives'
    assert results['metric'] == 'hit@10'
    assert set(results['test']) == {f'{m}@{k}' for m in ('hit', 'ndcg')
                                    for k in (5, 10, 20)}  # its defaults
    # a trained model ranks its held-out items far above chance (10/50)
    assert results['test']['hit@10'] > 0.3


def test_train_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(['train', '--model', 'nope', '--output-dir',
                 str(tmp_path)]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(['train', '--model', 'lightgcn', '--dataset', 'missing',
                 '--data-root', str(tmp_path), '--output-dir',
                 str(tmp_path)]) == 2
    assert 'missing' in capsys.readouterr().err


def test_models_and_datasets_commands(capsys, tmp_path):
    assert main(['models']) == 0
    text = capsys.readouterr().out
    for name in ('pop', 'lightgcn', 'vbpr', 'freedom'):
        assert name in text
    assert main(['datasets', '--data-root', str(tmp_path)]) == 0
    assert f'synthetic   (built in, generated on first use; not in ' \
        f'{tmp_path})' in capsys.readouterr().out


def test_datasets_lists_without_processing_unless_asked(tmp_path, capsys,
                                                         monkeypatch):
    from pyg_mmrec.data.preprocess import preprocess
    monkeypatch.setenv('PYG_MMREC_CACHE', str(tmp_path / 'cache'))
    lines = [f'{u},{i}' for u in range(30) for i in range(u % 7, 40, 4)]
    (tmp_path / 'log.csv').write_text('user,item\n' + '\n'.join(lines))
    preprocess('csv', str(tmp_path / 'log.csv'),
               str(tmp_path / 'data' / 'toy'), user_col='user',
               item_col='item', user_core=1, item_core=1)
    args = ['datasets', '--data-root', str(tmp_path / 'data')]
    assert main(args) == 0
    assert 'toy         (mmrec layout, not processed yet' in \
        capsys.readouterr().out
    assert not (tmp_path / 'cache').exists()  # listing built no cache
    assert main(args + ['--stats']) == 0
    stats = capsys.readouterr().out
    assert main(args) == 0  # processed now: its statistics without --stats
    listed = capsys.readouterr().out
    assert re.search(r'^toy +30 +\d+', stats, re.M) and listed == stats


SYNTHETIC_YAML = """\
lightgcn:
  model: {num_layers: 1, embedding_dim: 8}
  trainer: {lr: 0.01, epochs: 2}
  loader: {batch_size: 4096}
"""


def test_train_uses_and_prints_the_dataset_config(tmp_path, monkeypatch,
                                                  capsys):
    (tmp_path / 'experiments' / 'configs').mkdir(parents=True)
    (tmp_path / 'experiments' / 'configs' / 'synthetic.yaml').write_text(
        SYNTHETIC_YAML)
    monkeypatch.chdir(tmp_path)
    argv = ['train', '--model', 'lightgcn', '--dataset', 'synthetic',
            '--no-progress', '--output-dir', 'run']
    assert main(argv + ['--trainer.epochs', '1']) == 0
    lines = capsys.readouterr().out.splitlines()
    path = os.path.join('experiments', 'configs', 'synthetic.yaml')
    assert f'config: {path} [lightgcn]' in lines
    results = json.loads((tmp_path / 'run' / 'results.json').read_text())
    config = results['config']
    assert config['model'] == {'embedding_dim': 8, 'num_layers': 1,
                               'reg_weight': 1e-4}
    assert (config['trainer']['lr'], config['trainer']['epochs']) == (0.01, 1)
    assert config['loader']['batch_size'] == 4096
    weights = torch.load(tmp_path / 'run' / 'best.pt', weights_only=True)
    assert weights['embedding.weight'].shape[1] == 8  # the file's dimension
    assert results['epochs_run'] == 1  # the command line wins over the file

    # Resuming compares the resolved sections with the checkpoint's.
    assert main(argv + ['--trainer.epochs', '1', '--resume']) == 0
    capsys.readouterr()
    assert main(argv + ['--trainer.epochs', '1', '--resume', '--lr',
                        '0.5']) == 2
    assert 'another configuration (differs in trainer.lr)' in \
        capsys.readouterr().err

    # --config none: the model's defaults.
    assert main(argv + ['--config', 'none', '--epochs', '1',
                        '--output-dir', 'run2']) == 0
    assert "config: none (--config none)" in capsys.readouterr().out
    results = json.loads((tmp_path / 'run2' / 'results.json').read_text())
    assert results['config']['model']['embedding_dim'] == 64
    assert (results['config']['trainer']['lr'],
            results['config']['trainer']['epochs']) == (1e-3, 1)


def test_yaml_select_on_is_kept_unless_the_command_line_sets_it(
        tmp_path, monkeypatch, capsys):
    (tmp_path / 'experiments' / 'configs').mkdir(parents=True)
    (tmp_path / 'experiments' / 'configs' / 'synthetic.yaml').write_text(
        'pop:\n  evaluation: {select_on: test}\n')
    monkeypatch.chdir(tmp_path)
    argv = ['train', '--model', 'pop', '--dataset', 'synthetic',
            '--no-progress']
    assert main(argv + ['--output-dir', 'a']) == 0
    results = json.loads((tmp_path / 'a' / 'results.json').read_text())
    assert results['config']['evaluation']['select_on'] == 'test'
    assert results['selection'] != 'val'
    assert main(argv + ['--output-dir', 'b', '--select-on', 'val']) == 0
    results = json.loads((tmp_path / 'b' / 'results.json').read_text())
    assert results['selection'] == 'val'


def test_train_without_a_dataset_config_says_so(tmp_path, monkeypatch, capsys):
    (tmp_path / 'experiments' / 'configs').mkdir(parents=True)
    (tmp_path / 'experiments' / 'configs' / 'synthetic.yaml').write_text(
        'vbpr: {}\n')  # no section for pop
    monkeypatch.chdir(tmp_path)
    assert main(['train', '--model', 'pop', '--dataset', 'synthetic',
                 '--output-dir', 'run']) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("config: no file with a section for 'pop'")
    assert os.path.join('experiments', 'configs', 'synthetic.yaml') in line
    assert line.endswith("the defaults and the command line")


def test_models_name_lists_the_settings_with_defaults_and_help(capsys):
    assert main(['models', 'fmcns']) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith('fmcns: FMCNS')
    sections = [line for line in lines if line.endswith(':')
                and not line.startswith(' ')]
    assert sections == ['model:', 'trainer:', 'loader:', 'evaluation:']
    # a model argument, an inherited one (FREEDOM's), the model's own
    # trainer default, and the help line under each
    assert '  flow_weight = 0.5  [float]' in lines
    assert '  knn_k = 10  [int]' in lines
    assert "  lr = 0.0005 (the model's)  [float]" in lines
    assert "  batch_size = 512 (the model's)  [int]" in lines
    help_of = {line.split(' = ')[0].strip(): lines[i + 1].strip()
               for i, line in enumerate(lines[:-1]) if ' = ' in line}
    assert help_of['patience'] == ('Evaluations without improvement before '
                                   'stopping.')
    assert help_of['sampler'].startswith('"full": the model')
    assert help_of['select_on'].startswith('The split the best epoch')
    assert main(['models', 'nope']) == 2


def test_train_reports_a_bad_config_file(tmp_path, capsys):
    path = tmp_path / 'c.yaml'
    path.write_text('lightgcn:\n  trainer: {num_layers: 2}\n')
    assert main(['train', '--model', 'lightgcn', '--config', str(path),
                 '--output-dir', str(tmp_path / 'run')]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "unknown trainer setting 'num_layers'" in err
    assert "'num_layers' is a model setting" in err


class FullGraphOnly(MODELS['lightgcn']):
    r"""A model whose encoder needs the whole graph (every registered model
    trains on subgraphs since issue 30)."""
    supports_subgraph = False


def test_train_mini_batch_and_refusal(tmp_path, capsys, monkeypatch):
    out = tmp_path / 'run'
    assert main(['train', '--model', 'lightgcn', '--config', 'none',
                 '--epochs', '1', '--no-progress', '--output-dir', str(out),
                 '--sampler', 'neighbor', '--num-neighbors', '5,5',
                 '--batch-size', '4096']) == 0
    results = json.loads((out / 'results.json').read_text())
    assert results['config']['loader'] == {
        'sampler': 'neighbor', 'batch_size': 4096, 'num_neighbors': '5,5',
        'negatives': 'uniform', 'num_workers': 0}
    # a model that encodes the whole graph only: refused clearly
    monkeypatch.setitem(MODELS, 'fullgraphonly', FullGraphOnly)
    monkeypatch.setattr(FullGraphOnly, 'cli_name', 'fullgraphonly')
    assert main(['train', '--model', 'fullgraphonly', '--config', 'none',
                 '--epochs', '1', '--no-progress', '--output-dir',
                 str(tmp_path / 'f'), '--sampler', 'neighbor']) == 2
    assert 'FullGraphOnly encodes the whole training graph' in \
        capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize('model', sorted(
    name for name in MODELS if name != 'lightgcn'))
def test_torchrun_two_processes_train_every_model(tmp_path, model):
    # (LightGCN: with a resume, below.)
    import subprocess
    import sys
    out = tmp_path / 'run'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
           '--nproc_per_node', '2', '-m', 'pyg_mmrec', 'train', '--model',
           model, '--dataset', 'synthetic', '--config', 'none', '--epochs',
           '1', '--no-progress', '--output-dir', str(out)]
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((out / 'results.json').read_text())
    assert results['epochs_run'] == int(MODELS[model].trainable)
    assert all(value == value for value in results['test'].values())


@pytest.mark.slow
def test_torchrun_two_processes_train_and_resume(tmp_path):
    import subprocess
    import sys
    out = tmp_path / 'run'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
           '--nproc_per_node', '2', '-m', 'pyg_mmrec', 'train', '--model',
           'lightgcn', '--config', 'none', '--epochs', '2', '--no-progress',
           '--output-dir', str(out)]
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env,
                           timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count('best validation epoch') == 1  # rank 0 only
    results = json.loads((out / 'results.json').read_text())
    assert results['epochs_run'] == 2
    again = subprocess.run(cmd + ['--resume'], capture_output=True, text=True,
                           env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((out / 'results.json').read_text())['test'] == \
        results['test']


def test_every_command_takes_threads(capsys):
    before = torch.get_num_threads()
    try:
        assert main(['models', '--threads', '1']) == 0
        assert torch.get_num_threads() == 1
        with pytest.raises(SystemExit) as e:
            main(['datasets', '--threads', '0'])
        assert e.value.code == 2
        assert '--threads must be >= 1' in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
