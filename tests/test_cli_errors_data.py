"""Bad data through the real command line: ``preprocess`` with broken raw
logs or output paths, and ``train --dataset FOLDER`` with broken dataset
folders. Each case exits with code 2, prints no traceback and names the file
(and line, where there is one) and the problem. The small inputs are made
with the data tests' own builders."""
import gzip
import importlib.util
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import expect_cli_error, run_cli
from torch_geometric.data import HeteroData

from pyg_mmrec.data import MMRecDataset

TESTS = Path(__file__).resolve().parent


def _builders(relative: str):
    # The data tests' builders, imported from their files, not copied.
    path = TESTS / relative
    spec = importlib.util.spec_from_file_location(
        f'_builders_{path.stem}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


readers_tests = _builders('data/readers_helpers.py')
pipeline_tests = _builders('data/preprocess/test_pipeline.py')
write_mmrec, write_diffmm = readers_tests.write_mmrec, \
    readers_tests.write_diffmm
write_reviews = pipeline_tests.write_reviews
ROWS = readers_tests.ROWS


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv('PYG_MMREC_CACHE', str(tmp_path / 'cache'))
    monkeypatch.delenv('PYG_MMREC_DATA', raising=False)
    monkeypatch.chdir(tmp_path)  # no per-dataset config; runs/ in tmp


def train_argv(folder, tmp_path):
    return ['train', '--model', 'pop', '--dataset', str(folder), '--epochs',
            '1', '--no-progress', '--output-dir', str(tmp_path / 'run')]


def preprocess_argv(fmt, path, out, *extra):
    return ['preprocess', '--format', fmt, '--input', str(path), '--output',
            str(out), '--no-progress', *extra]


def review(user, item, rating=5.0, time=100):
    return json.dumps({'reviewerID': user, 'asin': item, 'overall': rating,
                       'unixReviewTime': time})


def no_output(out):
    parent = Path(out).parent
    return not Path(out).exists() and not [
        e for e in os.listdir(parent) if e.startswith('.')]


# preprocess ##################################################################

def test_truncated_gzip(tmp_path, capsys):
    raw = tmp_path / 'reviews.json.gz'
    write_reviews(raw)
    data = raw.read_bytes()
    raw.write_bytes(data[:len(data) // 2])
    expect_cli_error(preprocess_argv('amazon', raw, tmp_path / 'out'),
                     capsys, r'reviews\.json\.gz', 'corrupt or truncated gzip')
    assert no_output(tmp_path / 'out')


def test_garbage_after_gzip_magic(tmp_path, capsys):
    raw = tmp_path / 'reviews.json'
    raw.write_bytes(b'\x1f\x8b' + b'not compressed at all' * 10)
    expect_cli_error(preprocess_argv('amazon', raw, tmp_path / 'out'),
                     capsys, r'reviews\.json', 'corrupt or truncated gzip')


def test_amazon_not_utf8(tmp_path, capsys):
    raw = tmp_path / 'reviews.json'
    raw.write_bytes((review('A1', 'B1') + '\n').encode() +
                    b'{"reviewerID": "Jos\xe9", "asin": "B1", "overall": 5, '
                    b'"unixReviewTime": 1}\n')
    expect_cli_error(preprocess_argv('amazon', raw, tmp_path / 'out'),
                     capsys, r'reviews\.json:2:', 'not valid UTF-8')


def test_csv_not_utf8(tmp_path, capsys):
    raw = tmp_path / 'log.csv'
    raw.write_bytes(b'user,item\nu1,i1\nu\xff,i2\n')
    expect_cli_error(preprocess_argv('csv', raw, tmp_path / 'out'), capsys,
                     r'log\.csv:3:', 'not valid UTF-8')


def test_csv_non_numeric_rating(tmp_path, capsys):
    raw = tmp_path / 'log.csv'
    raw.write_text('user,item,stars\nu1,i1,5\nu2,i1,five\n')
    expect_cli_error(preprocess_argv('csv', raw, tmp_path / 'out',
                                     '--rating-col', 'stars'), capsys,
                     r'log\.csv:3:', "non-numeric rating 'five'")


def test_amazon_infinite_time(tmp_path, capsys):
    raw = tmp_path / 'reviews.json'
    raw.write_text(review('A1', 'B1') + '\n' +
                   review('A2', 'B1').replace('100', '1e999') + '\n')
    expect_cli_error(preprocess_argv('amazon', raw, tmp_path / 'out'),
                     capsys, r'reviews\.json:2:', 'not a finite number')


def test_output_is_a_file(tmp_path, capsys):
    (tmp_path / 'out').write_text('not a folder')
    # The input does not exist: the output is checked before reading it.
    expect_cli_error(preprocess_argv('amazon', tmp_path / 'absent.json',
                                     tmp_path / 'out'), capsys,
                     'out', 'exists and is not a folder')
    assert (tmp_path / 'out').read_text() == 'not a folder'


def test_output_folder_with_other_files(tmp_path, capsys):
    raw = tmp_path / 'reviews.json.gz'
    write_reviews(raw)
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'notes.md').write_text('mine')
    expect_cli_error(preprocess_argv('amazon', raw, tmp_path / 'out'),
                     capsys, 'out', r'does not write \(notes\.md\)')
    assert os.listdir(tmp_path / 'out') == ['notes.md']


def test_bad_item_features_leave_no_dataset(tmp_path, capsys):
    raw = tmp_path / 'reviews.json.gz'
    write_reviews(raw)
    feat = tmp_path / 'feat.txt'
    feat.write_text('I000 0.5 1\nI001 0.5 one\n')
    out = tmp_path / 'out'
    expect_cli_error(preprocess_argv('amazon', raw, out, '--item-features',
                                     f'image={feat}'), capsys,
                     r'feat\.txt:2:', 'non-numeric feature value')
    assert no_output(out)  # not a dataset without its features


def test_failure_keeps_previous_output(tmp_path, capsys):
    raw = tmp_path / 'reviews.json.gz'
    write_reviews(raw)
    out = tmp_path / 'out'
    assert run_cli(preprocess_argv('amazon', raw, out), capsys)[0] == 0
    before = sorted(os.listdir(out))
    raw.write_bytes(raw.read_bytes()[:100])
    expect_cli_error(preprocess_argv('amazon', raw, out), capsys,
                     r'reviews\.json\.gz', 'truncated')
    assert sorted(os.listdir(out)) == before


def test_csv_with_bom_is_accepted(tmp_path, capsys):
    raw = tmp_path / 'log.csv'
    lines = [f'u{u},i{(u + k) % 9}' for u in range(12) for k in range(6)]
    raw.write_bytes(('\ufeffuser,item\n' + '\n'.join(lines) + '\n')
                    .encode('utf-8'))
    code, _, err = run_cli(preprocess_argv('csv', raw, tmp_path / 'out'),
                           capsys)
    assert code == 0, err


# train --dataset #############################################################

def test_gzipped_inter(tmp_path, capsys):
    folder = Path(write_mmrec(tmp_path / 'toy'))
    path = folder / 'toy.inter'
    path.write_bytes(gzip.compress(path.read_bytes()))
    expect_cli_error(train_argv(folder, tmp_path), capsys, r'toy\.inter',
                     'gzip-compressed: decompress it first')


def test_inter_not_utf8(tmp_path, capsys):
    folder = Path(write_mmrec(tmp_path / 'toy', header='userID\titemID\t'
                              'x_label\tnote'))
    path = folder / 'toy.inter'
    lines = path.read_bytes().split(b'\n')
    lines[4] += b'\tcaf\xe9'
    path.write_bytes(b'\n'.join(lines))
    expect_cli_error(train_argv(folder, tmp_path), capsys, r'toy\.inter:5:',
                     'not valid UTF-8')


def test_inter_non_integer_id(tmp_path, capsys):
    folder = Path(write_mmrec(tmp_path / 'toy', header='userID\titemID\t'
                              'x_label'))
    path = folder / 'toy.inter'
    lines = path.read_text().splitlines()
    lines[3] = 'u7\t1\t0'
    path.write_text('\n'.join(lines) + '\n')
    expect_cli_error(train_argv(folder, tmp_path), capsys, r'toy\.inter',
                     "line 4, column 'userID': 'u7' is not an integer")


@pytest.mark.parametrize('column', ['user', 'item'])
def test_huge_ids(tmp_path, capsys, column):
    extra = (2 ** 40, 0, 0) if column == 'user' else (0, 2 ** 40, 0)
    folder = write_mmrec(tmp_path / 'toy', rows=ROWS + [extra])
    expect_cli_error(train_argv(folder, tmp_path), capsys, r'toy\.inter',
                     f'the {column} ids span 0..{2 ** 40}', 'not contiguous')


def test_diffmm_huge_shape(tmp_path, capsys):
    folder = write_diffmm(tmp_path / 'toy', shape=(2 ** 40, 5))
    expect_cli_error(train_argv(folder, tmp_path), capsys, r'trnMat\.pkl',
                     'not contiguous')


@pytest.mark.parametrize('shape', [(5, 0), (5, )])
def test_feature_without_dimensions(tmp_path, capsys, shape):
    folder = write_mmrec(tmp_path / 'toy', features={
        'image': np.zeros(shape, np.float32)})
    expect_cli_error(train_argv(folder, tmp_path), capsys,
                     r'image_feat\.npy', r'2-d \[num_items, dim\] array '
                     r'with dim >= 1')


def test_gzipped_feature_file(tmp_path, capsys):
    folder = Path(write_mmrec(tmp_path / 'toy', features={
        'image': np.ones((5, 3), np.float32)}))
    path = folder / 'image_feat.npy'
    path.write_bytes(gzip.compress(path.read_bytes()))
    expect_cli_error(train_argv(folder, tmp_path), capsys,
                     r'image_feat\.npy', 'not a readable .npy')


def test_several_inter_files(tmp_path, capsys):
    folder = tmp_path / 'toy'
    write_mmrec(folder, name='a')
    write_mmrec(folder, name='b')
    expect_cli_error(train_argv(folder, tmp_path), capsys, r'a\.inter, '
                     r'b\.inter', "rename the one to read to 'toy.inter'")


def test_several_inter_files_one_named_after_folder(tmp_path, capsys,
                                                    caplog):
    folder = tmp_path / 'toy'
    write_mmrec(folder, name='toy')
    write_mmrec(folder, name='backup')
    code, _, err = run_cli(train_argv(folder, tmp_path), capsys)
    assert code == 0, err
    assert 'reading toy.inter (named after the folder) and ignoring ' \
        'backup.inter' in caplog.text


def test_test_split_only_of_cold_users(tmp_path, capsys):
    # User 3's test interaction is the only one; user 3 never trains.
    rows = [r for r in ROWS if r[2] != 2] + [(3, 0, 2)]
    folder = write_mmrec(tmp_path / 'toy', rows=rows)
    expect_cli_error(train_argv(folder, tmp_path), capsys, r'toy\.inter',
                     'the test split is empty after dropping the held-out '
                     'interactions of users without training interactions')


def test_diffmm_truncated_pickle(tmp_path, capsys):
    folder = Path(write_diffmm(tmp_path / 'toy'))
    path = folder / 'valMat.pkl'
    path.write_bytes(path.read_bytes()[:40])
    expect_cli_error(train_argv(folder, tmp_path), capsys, r'valMat\.pkl',
                     'truncated')


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.mark.parametrize('writer', ['torch.save', 'pickle.dump'])
def test_crafted_cache_is_not_executed(tmp_path, capsys, writer):
    folder = write_mmrec(tmp_path / 'toy')
    cache = MMRecDataset(folder)
    marker = tmp_path / 'MARKER'
    payload = (_Payload(marker), None, HeteroData)
    if writer == 'torch.save':
        torch.save(payload, cache.processed_paths[0])
    else:  # the legacy (non-zip) format
        with open(cache.processed_paths[0], 'wb') as f:
            pickle.dump(payload, f)
    code, _, err = run_cli(train_argv(folder, tmp_path), capsys)
    assert code == 0, err
    assert not marker.exists()
