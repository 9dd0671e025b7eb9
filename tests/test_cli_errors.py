"""Bad input through the real command line (``train``, ``recommend``,
``report``, ``models``): each case exits with code 2 (3: training diverged),
prints no traceback and names the file or argument and the problem. Files
the library reads never run code. The data-layer cases (dataset folders,
``preprocess``) are in ``test_cli_errors_data.py``."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from cli_helpers import expect_cli_error, run_cli, run_cli_process

from pyg_mmrec.experiment import run_experiment
from pyg_mmrec.train.checkpoint import TEMP_PREFIX

TRAIN = ['train', '--model', 'lightgcn', '--dataset', 'synthetic',
         '--no-progress', '--epochs', '1']


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    r"""A finished two-epoch LightGCN run (best.pt, last.pt, results.json)."""
    out = str(tmp_path_factory.mktemp('run') / 'lightgcn')
    run_experiment('lightgcn', 'synthetic', output_dir=out, progress=False,
                   config={'epochs': 2, 'embedding_dim': 8, 'num_layers': 1})
    return out


@pytest.fixture
def run_copy(run, tmp_path):
    r"""A copy of :obj:`run` that a test may damage."""
    return shutil.copytree(run, str(tmp_path / 'copy'))


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no per-dataset config; runs/ in tmp


class Payload:
    r"""Pickles as a call of :obj:`open(marker, 'w')`: loading it with
    :obj:`weights_only=False` creates the marker file."""
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def craft(path, marker, base=None):
    state = dict(base or {})
    state['history'] = Payload(marker)
    torch.save(state, path)


def resume_argv(run_dir):
    return ['train', '--model', 'lightgcn', '--dataset', 'synthetic',
            '--no-progress', '--epochs', '2', '--embedding-dim', '8',
            '--num-layers', '1', '--output-dir', run_dir, '--resume']


# 1. No code execution from any file ------------------------------------
def test_the_payload_is_live_without_weights_only(tmp_path):
    # The crafted file really runs code under the old, unsafe load.
    marker = tmp_path / 'ran'
    craft(tmp_path / 'x.pt', marker)
    torch.load(tmp_path / 'x.pt', weights_only=False)
    assert marker.exists()


def test_crafted_last_checkpoint_is_refused_on_resume(run_copy, tmp_path,
                                                      capsys):
    marker = tmp_path / 'ran'
    state = torch.load(os.path.join(run_copy, 'last.pt'), weights_only=True)
    craft(os.path.join(run_copy, 'last.pt'), marker, state)
    expect_cli_error(resume_argv(run_copy), capsys, 'last.pt',
                     'refused to load', 'not executed')
    assert not marker.exists()


def test_crafted_last_checkpoint_is_refused_by_recommend(run_copy, tmp_path,
                                                         capsys):
    marker = tmp_path / 'ran'
    os.remove(os.path.join(run_copy, 'best.pt'))  # recommend reads last.pt
    craft(os.path.join(run_copy, 'last.pt'), marker)
    expect_cli_error(['recommend', '--run', run_copy, '--users', '0'],
                     capsys, 'last.pt', 'refused to load')
    assert not marker.exists()


def test_crafted_best_checkpoint_is_refused_in_a_real_process(run_copy,
                                                              tmp_path):
    marker = tmp_path / 'ran'
    craft(os.path.join(run_copy, 'best.pt'), marker)
    proc = run_cli_process(['recommend', '--run', run_copy, '--users', '0'],
                           cwd=str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert 'best.pt: refused to load' in proc.stderr
    assert not marker.exists()


# Corrupt, empty, truncated, incomplete checkpoints --------------------
@pytest.mark.parametrize('damage', ['empty', 'garbage', 'truncated'])
def test_damaged_checkpoint_is_named_corrupt(run_copy, capsys, damage):
    path = os.path.join(run_copy, 'last.pt')
    raw = open(path, 'rb').read()
    content = {'empty': b'', 'garbage': b'not a checkpoint at all' * 10,
               'truncated': raw[:len(raw) // 2]}[damage]
    with open(path, 'wb') as f:
        f.write(content)
    expect_cli_error(resume_argv(run_copy), capsys, 'last.pt',
                     'empty|corrupt')


def test_checkpoint_missing_a_key_is_named(run_copy, capsys):
    path = os.path.join(run_copy, 'last.pt')
    state = torch.load(path, weights_only=True)
    del state['rng']
    torch.save(state, path)
    expect_cli_error(resume_argv(run_copy), capsys, 'last.pt', "missing 'rng'")


def test_checkpoint_of_another_shape_is_named(run_copy, capsys):
    path = os.path.join(run_copy, 'best.pt')
    state = torch.load(path, weights_only=True)
    state['embedding.weight'] = state['embedding.weight'][:, :4]
    torch.save(state, path)
    expect_cli_error(['recommend', '--run', run_copy, '--users', '0'], capsys,
                     'best.pt', 'do not fit')


# 3. Settings are type-checked against the annotations ------------------
@pytest.mark.parametrize('args,fragments', [
    (['--lr', 'abc'], ["'lr'", 'float', 'abc']),
    (['--epochs', 'ten'], ["'epochs'", 'int', 'ten']),
    (['--batch-size', '1.5'], ["'batch_size'", 'int', '1.5']),
    (['--embedding-dim', '0'], ["'embedding_dim'", '>= 1']),
    (['--ks', '[5, x]'], ["'ks'", 'list of int']),
    (['--select-on', 'best'], ['--select-on', 'invalid choice']),
    (['--nope', '1'], ["unknown setting 'nope'", 'lr']),
    (['--lr'], ['--lr needs a value']),
    (['--trainer.num_layers', '2'], ["'num_layers' is a model setting"]),
    (['--bogus.lr', '1'], ["unknown section 'bogus'"]),
    (['--clip-grad-norm', '0'], ['clip_grad_norm must be > 0']),
    (['--protocol', 'leave-one-out'], ['protocol', 'leave-one-out']),
    (['--sampler', 'neighbor', '--model', 'pop'], ['neighbor', 'Pop']),
])
def test_bad_settings_are_named(capsys, args, fragments):
    expect_cli_error(TRAIN + args, capsys, *fragments)


def test_text_value_in_yaml_names_the_file_and_key(tmp_path, capsys):
    path = tmp_path / 'c.yaml'
    path.write_text('lightgcn:\n  trainer: {lr: fast}\n')
    expect_cli_error(TRAIN + ['--config', str(path)], capsys, 'c.yaml',
                     "'lr' expects float", 'fast')


@pytest.mark.parametrize('content,fragment', [
    ('lightgcn: [1,\n', 'not valid YAML'),
    ('- a\n- b\n', 'one mapping per model'),
    ('lightgcn:\n  model: 3\n', "section 'model' must be a mapping"),
])
def test_malformed_yaml_is_named(tmp_path, capsys, content, fragment):
    path = tmp_path / 'c.yaml'
    path.write_text(content)
    expect_cli_error(TRAIN + ['--config', str(path)], capsys, 'c.yaml',
                     fragment)


def test_missing_config_file_is_named(capsys):
    expect_cli_error(TRAIN + ['--config', 'nowhere.yaml'], capsys,
                     'nowhere.yaml', 'does not exist')


@pytest.mark.parametrize('device,fragment', [
    ('gpu0', 'not a device'),
    ('cuda:7' if torch.cuda.is_available() else 'cuda',
     'CUDA'),
])
def test_unusable_device_is_refused_before_loading(capsys, device, fragment):
    expect_cli_error(TRAIN + ['--device', device], capsys, '--device',
                     fragment)


def test_unknown_model_and_dataset_are_named(capsys):
    expect_cli_error(['train', '--model', 'gpt', '--epochs', '1'], capsys,
                     "unknown model 'gpt'", 'lightgcn')
    expect_cli_error(TRAIN + ['--dataset', 'nosuchset'], capsys,
                     'nosuchset', 'not found')


# Output folders, locks, leftovers ---------------------------------------
def test_output_dir_that_is_a_file_is_refused_before_training(tmp_path,
                                                              capsys):
    (tmp_path / 'taken').write_text('x')
    err = expect_cli_error(TRAIN + ['--output-dir', 'taken'], capsys,
                           '--output-dir taken', 'existing file')
    assert 'epoch' not in err


def test_second_run_on_a_folder_is_refused_naming_the_holder(tmp_path,
                                                              capsys):
    holder = subprocess.Popen([sys.executable, '-c',
                               'import time; time.sleep(60)'])
    try:
        (tmp_path / 'busy').mkdir()
        (tmp_path / 'busy' / '.lock').write_text(str(holder.pid))
        expect_cli_error(TRAIN + ['--output-dir', 'busy'], capsys, 'busy',
                         f'PID {holder.pid}')
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its lock is taken over, and released at the end.
    code, _, err = run_cli(TRAIN + ['--output-dir', 'busy'], capsys)
    assert code == 0, err
    assert not (tmp_path / 'busy' / '.lock').exists()


def test_leftover_temporary_files_are_removed_at_start(tmp_path, capsys):
    folder = tmp_path / 'run'
    folder.mkdir()
    (folder / f'{TEMP_PREFIX}abc.pt').write_bytes(b'half a checkpoint')
    (folder / 'results.json.tmp').write_text('{"half')
    code, _, err = run_cli(TRAIN + ['--output-dir', 'run'], capsys)
    assert code == 0, err
    assert sorted(os.listdir(folder)) == ['best.pt', 'last.pt',
                                          'results.json']


def test_resume_without_a_checkpoint_says_so(tmp_path, capsys, caplog):
    code, _, _ = run_cli(TRAIN + ['--output-dir', 'typo', '--resume'],
                         capsys)
    assert code == 0
    assert any('--resume: no checkpoint' in r.getMessage()
               and os.path.join('typo', 'last.pt') in r.getMessage()
               for r in caplog.records)


def test_full_disk_is_named(tmp_path, capsys, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(os, 'fsync', full)  # inside every checkpoint write
    expect_cli_error(TRAIN + ['--output-dir', 'run'], capsys,
                     r'run[/\\](best|last)\.pt: no space left on device')
    assert not [f for f in os.listdir(tmp_path / 'run')
                if f.startswith(TEMP_PREFIX)]


# 2. Divergence -----------------------------------------------------------
def test_diverging_run_stops_and_writes_strict_json(tmp_path, capsys):
    code, out, err = run_cli(TRAIN + ['--lr', '1e30', '--epochs', '3',
                                      '--output-dir', 'run'], capsys)
    assert code == 3 and 'Traceback' not in out + err
    assert "training diverged at epoch 1: loss term 'bpr'" in err
    assert 'batch' in err and '--lr' in err
    text = (tmp_path / 'run' / 'results.json').read_text()
    results = json.loads(text, parse_constant=lambda c: pytest.fail(c))
    assert 'diverged at epoch 1' in results['diverged']
    assert results['epochs_run'] == 0


def test_clipping_keeps_the_same_run_finite(tmp_path, capsys):
    code, _, err = run_cli(TRAIN + ['--lr', '1e30', '--clip-grad-norm',
                                    '1e-30', '--output-dir', 'run'], capsys)
    assert code == 0, err


# recommend / report / models --------------------------------------------
@pytest.mark.parametrize('args,fragments', [
    (['--users', 'a,b'], ['--users', 'integer']),
    (['--users', '99999999'], ['unknown user ids', '99999999']),
    (['--users', '0', '--k', '0'], ['k must be between 1']),
    (['--users', '0', '--batch-size', '0'], ['batch_size must be >= 1']),
    (['--users', '0', '--output', '.'], ['--output', 'is a folder']),
])
def test_bad_recommend_arguments_are_named(run, capsys, args, fragments):
    expect_cli_error(['recommend', '--run', run] + args, capsys, *fragments)


def test_recommend_refuses_a_model_with_scores_that_are_not_finite(
        run_copy, capsys):
    path = os.path.join(run_copy, 'best.pt')
    state = torch.load(path, weights_only=True)
    state['embedding.weight'][3] = float('nan')
    torch.save(state, path)
    expect_cli_error(['recommend', '--run', run_copy, '--all-users'], capsys,
                     'not finite', 'diverged')


def test_recommend_without_a_run_is_named(tmp_path, capsys):
    (tmp_path / 'empty').mkdir()
    expect_cli_error(['recommend', '--run', 'empty', '--users', '0'], capsys,
                     'empty', 'no results.json')


def test_report_output_that_is_a_file_and_missing_runs(run, tmp_path,
                                                       capsys):
    (tmp_path / 'taken').write_text('x')
    expect_cli_error(['report', run, '--output', 'taken'], capsys,
                     '--output taken', 'existing file')
    expect_cli_error(['report', 'no/such/runs'], capsys, 'no/such/runs',
                     'no run directory')


def test_report_rejects_a_results_file_that_is_not_json(run_copy, capsys):
    with open(os.path.join(run_copy, 'results.json'), 'w') as f:
        f.write('{"config": ')
    expect_cli_error(['report', run_copy], capsys, 'results.json',
                     'not valid JSON')


def test_report_marks_a_diverged_run(run, tmp_path, capsys):
    code, _, _ = run_cli(TRAIN + ['--lr', '1e30', '--output-dir',
                                  'diverged'], capsys)
    assert code == 3
    code, out, err = run_cli(['report', 'diverged', run, '--output', 'rep'],
                             capsys)
    assert code == 0, err
    row = next(line for line in out.splitlines() if '**diverged**' in line)
    assert row.startswith('| lightgcn') and '(1 of 1)' in row
