import gzip
import os
import pickle
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from pyg_mmrec.data import (
    INTERACTS,
    REV_INTERACTS,
    DataFormatError,
    build_hetero_data,
    detect_format,
    item_features,
    modalities,
    num_items,
    num_users,
    read_diffmm,
    read_folder,
    read_mmrec,
    split_edge_index,
)

# user, item, x_label
ROWS = [
    (0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 2),
    (1, 1, 0), (1, 4, 0), (1, 0, 1), (1, 2, 2),
    (2, 3, 0), (2, 4, 2),
]


FULL_HEADER = 'userID\titemID\trating\ttimestamp\tx_label'


def write_inter(path, rows, header=FULL_HEADER, newline='\n'):
    lines = [header] if header is not None else []
    for u, i, s in rows:
        if header is not None and 'rating' in header:
            lines.append(f'{u}\t{i}\t5.0\t1380000000\t{s}')
        else:
            lines.append(f'{u}\t{i}\t{s}')
    with open(path, 'w', newline='') as f:
        f.write(newline.join(lines) + newline)


def write_mmrec(folder, rows=ROWS, features=None, name='toy', **kwargs):
    os.makedirs(folder, exist_ok=True)
    write_inter(os.path.join(folder, f'{name}.inter'), rows, **kwargs)
    for modality, feat in (features or {}).items():
        np.save(os.path.join(folder, f'{modality}_feat.npy'), feat)
    return str(folder)


def toy_features(num=5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        'image': rng.standard_normal((num, 6)).astype(np.float32),
        'text': rng.standard_normal((num, 4)).astype(np.float16),
    }


def write_pickle(path, obj):
    with open(path, 'wb') as f:
        pickle.dump(obj, f)


def coo(pairs, shape):
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                         shape=shape)


def write_diffmm(folder, rows=ROWS, shape=(3, 5), features=None):
    os.makedirs(folder, exist_ok=True)
    for code, f in enumerate(('trnMat.pkl', 'valMat.pkl', 'tstMat.pkl')):
        pairs = [(u, i) for u, i, s in rows if s == code]
        write_pickle(os.path.join(folder, f), coo(pairs, shape))
    for modality, feat in (features or {}).items():
        np.save(os.path.join(folder, f'{modality}_feat.npy'), feat)
    return str(folder)


def split_pairs(data, split):
    return sorted(map(tuple, split_edge_index(data, split).t().tolist()))


def expected_pairs(rows, code):
    return sorted((u, i) for u, i, s in rows if s == code)


def check_toy(data, features=None):
    assert num_users(data) == 3
    assert num_items(data) == 5
    for code, split in enumerate(('train', 'val', 'test')):
        assert split_pairs(data, split) == expected_pairs(ROWS, code)
    store = data[INTERACTS]
    assert store.edge_index.dtype == torch.long
    for split in ('train', 'val', 'test'):
        assert store[f'{split}_mask'].dtype == torch.bool
    masks = store.train_mask.int() + store.val_mask.int() + \
        store.test_mask.int()
    assert bool((masks == 1).all())
    assert torch.equal(data[REV_INTERACTS].edge_index,
                       store.edge_index.flip(0))
    feats = item_features(data)
    assert list(feats) == [m for m in ('image', 'text')
                           if m in (features or {})]
    for m, x in feats.items():
        assert x.dtype == torch.float32
        assert torch.equal(x, torch.from_numpy(
            features[m].astype(np.float32)))


# MMRec #######################################################################

def test_read_mmrec_round_trip(tmp_path):
    features = toy_features()
    folder = write_mmrec(tmp_path / 'toy', features=features)
    assert detect_format(folder) == 'mmrec'
    data = read_mmrec(folder)
    assert data.name == 'toy'
    check_toy(data, features)
    assert modalities(data) == ['image', 'text']
    assert read_folder(folder).name == 'toy'


@pytest.mark.parametrize('newline', ['\n', '\r\n'])
def test_read_mmrec_minimal_columns_any_order(tmp_path, newline):
    path = tmp_path / 'toy.inter'
    lines = ['x_label\titemID\tuserID']
    lines += [f'{s}\t{i}\t{u}' for u, i, s in ROWS]
    path.write_bytes((newline.join(lines) + newline).encode())
    data = read_mmrec(str(tmp_path))
    check_toy(data)
    assert modalities(data) == []


def test_read_mmrec_picks_named_file(tmp_path):
    write_mmrec(tmp_path, name='a')
    write_mmrec(tmp_path, rows=ROWS + [(3, 5, 0)], name='b')
    with pytest.raises(DataFormatError, match='several'):
        read_mmrec(str(tmp_path))
    assert num_users(read_mmrec(str(tmp_path), name='b')) == 4
    with pytest.raises(FileNotFoundError, match='c.inter'):
        read_mmrec(str(tmp_path), name='c')


def test_mmrec_feature_rows_mismatch(tmp_path):
    feats = toy_features(num=6)  # 5 items in the interactions
    folder = write_mmrec(tmp_path, features={'image': feats['image']})
    with pytest.raises(DataFormatError) as e:
        read_mmrec(folder)
    msg = str(e.value)
    assert msg.startswith(os.path.join(folder, 'image_feat.npy'))
    assert '6 rows' in msg and '5 items' in msg


def test_mmrec_feature_rows_disagree(tmp_path):
    feats = toy_features()
    feats['text'] = feats['text'][:4]
    folder = write_mmrec(tmp_path, features=feats)
    with pytest.raises(DataFormatError) as e:
        read_mmrec(folder)
    assert str(e.value).startswith(os.path.join(folder, 'text_feat.npy'))
    assert '4 rows' in str(e.value)


def test_mmrec_item_id_out_of_range(tmp_path):
    # Item 4 has no feature row.
    feats = {'image': toy_features(4)['image']}
    folder = write_mmrec(tmp_path, features=feats)
    with pytest.raises(DataFormatError) as e:
        read_mmrec(folder)
    msg = str(e.value)
    assert msg.startswith(os.path.join(folder, 'toy.inter'))
    assert 'out of range' in msg and 'item' in msg


@pytest.mark.parametrize('column', ['userID', 'itemID', 'x_label'])
def test_mmrec_negative_ids(tmp_path, column):
    rows = list(ROWS)
    u, i, s = rows[3]
    rows[3] = {'userID': (-1, i, s), 'itemID': (u, -2, s),
               'x_label': (u, i, -1)}[column]
    folder = write_mmrec(tmp_path, rows=rows)
    with pytest.raises(DataFormatError) as e:
        read_mmrec(folder)
    msg = str(e.value)
    assert msg.startswith(os.path.join(folder, 'toy.inter'))
    assert 'negative' in msg and column in msg


def test_mmrec_bad_split_label(tmp_path):
    folder = write_mmrec(tmp_path, rows=ROWS + [(2, 0, 3)])
    with pytest.raises(DataFormatError, match='split labels') as e:
        read_mmrec(folder)
    assert str(e.value).startswith(os.path.join(folder, 'toy.inter'))


@pytest.mark.parametrize('bad', ['1.5', 'abc', '', '1e3'])
def test_mmrec_non_integer(tmp_path, bad):
    path = tmp_path / 'toy.inter'
    write_inter(path, ROWS, header='userID\titemID\tx_label')
    lines = path.read_text().splitlines()
    lines[4] = f'{bad}\t1\t0'  # file line 5
    path.write_text('\n'.join(lines) + '\n')
    with pytest.raises(DataFormatError) as e:
        read_mmrec(str(tmp_path))
    msg = str(e.value)
    assert msg.startswith(str(path))
    assert 'line 5' in msg and 'userID' in msg and 'not an integer' in msg


def test_mmrec_short_row(tmp_path):
    path = tmp_path / 'toy.inter'
    write_inter(path, ROWS, header='userID\titemID\tx_label')
    path.write_text(path.read_text() + '2\t1\n')
    with pytest.raises(DataFormatError, match="line 12.*'x_label' is missing"):
        read_mmrec(str(tmp_path))


def test_mmrec_missing_column(tmp_path):
    path = tmp_path / 'toy.inter'
    path.write_text('userID\titemID\trating\n0\t0\t5\n')
    with pytest.raises(DataFormatError) as e:
        read_mmrec(str(tmp_path))
    msg = str(e.value)
    assert msg.startswith(str(path))
    assert "missing column(s) 'x_label'" in msg


def test_mmrec_no_header(tmp_path):
    write_mmrec(tmp_path, header=None)
    with pytest.raises(DataFormatError) as e:
        read_mmrec(str(tmp_path))
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / 'toy.inter'))
    assert 'no header' in msg


@pytest.mark.parametrize('content', ['', '\n'])
def test_mmrec_empty_file(tmp_path, content):
    (tmp_path / 'toy.inter').write_text(content)
    with pytest.raises(DataFormatError) as e:
        read_mmrec(str(tmp_path))
    assert str(e.value).startswith(str(tmp_path / 'toy.inter'))
    assert 'empty' in str(e.value)


def test_mmrec_header_only(tmp_path):
    write_mmrec(tmp_path, rows=[])
    with pytest.raises(DataFormatError, match='no interaction rows') as e:
        read_mmrec(str(tmp_path))
    assert str(e.value).startswith(str(tmp_path / 'toy.inter'))


@pytest.mark.parametrize('split,code', [('train', 0), ('val', 1),
                                        ('test', 2)])
def test_mmrec_empty_split(tmp_path, split, code):
    folder = write_mmrec(tmp_path, rows=[r for r in ROWS if r[2] != code])
    with pytest.raises(DataFormatError) as e:
        read_mmrec(folder)
    msg = str(e.value)
    assert msg.startswith(os.path.join(folder, 'toy.inter'))
    assert f'the {split} split is empty' in msg


def test_mmrec_pair_in_two_splits(tmp_path):
    folder = write_mmrec(tmp_path, rows=ROWS + [(0, 0, 2)])
    with pytest.raises(DataFormatError) as e:
        read_mmrec(folder)
    msg = str(e.value)
    assert msg.startswith(os.path.join(folder, 'toy.inter'))
    assert 'two splits' in msg and '(0, 0) in train and test' in msg


def test_mmrec_duplicate_pair(tmp_path):
    folder = write_mmrec(tmp_path, rows=ROWS + [(1, 4, 0)])
    with pytest.raises(DataFormatError) as e:
        read_mmrec(folder)
    msg = str(e.value)
    assert msg.startswith(os.path.join(folder, 'toy.inter'))
    assert 'duplicate' in msg and '(1, 4) twice in train' in msg


@pytest.mark.parametrize('value', [np.nan, np.inf, -np.inf])
def test_features_nan_inf(tmp_path, value):
    feats = toy_features()
    feats['image'][2, 3] = value
    folder = write_mmrec(tmp_path, features=feats)
    with pytest.raises(DataFormatError) as e:
        read_mmrec(folder)
    msg = str(e.value)
    assert msg.startswith(os.path.join(folder, 'image_feat.npy'))
    assert 'NaN or inf' in msg and 'item 2' in msg


def test_features_not_npy(tmp_path):
    folder = write_mmrec(tmp_path)
    (tmp_path / 'image_feat.npy').write_bytes(b'not an array')
    with pytest.raises(DataFormatError) as e:
        read_mmrec(folder)
    assert str(e.value).startswith(str(tmp_path / 'image_feat.npy'))
    assert 'not a readable .npy' in str(e.value)


def test_features_wrong_ndim(tmp_path):
    folder = write_mmrec(tmp_path, features={'image': np.zeros(5)})
    with pytest.raises(DataFormatError, match=r'2-d.*\(5,\)') as e:
        read_mmrec(folder)
    assert str(e.value).startswith(str(tmp_path / 'image_feat.npy'))


def test_features_object_array_refused(tmp_path):
    folder = write_mmrec(tmp_path)
    np.save(tmp_path / 'image_feat.npy',
            np.array([[object()]] * 5, dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError) as e:
        read_mmrec(folder)
    assert str(e.value).startswith(str(tmp_path / 'image_feat.npy'))


def test_build_hetero_data_ids_out_of_range():
    user = np.array([0, 1, 3])
    item = np.array([0, 1, 1])
    split = np.array([0, 1, 2])
    with pytest.raises(DataFormatError, match=r'^x.inter: 1 user id\(s\) '
                       r'out of range \[0, 3\), e.g. 3'):
        build_hetero_data(user, item, split, 3, 2,
                          sources={'interactions': 'x.inter'})


# DiffMM ######################################################################

def test_read_diffmm_round_trip(tmp_path):
    features = toy_features()
    folder = write_diffmm(tmp_path / 'toy', features=features)
    assert detect_format(folder) == 'diffmm'
    data = read_diffmm(folder)
    assert data.name == 'toy'
    check_toy(data, features)
    assert read_folder(folder).name == 'toy'


def test_read_diffmm_binarises_and_merges_duplicates(tmp_path):
    folder = write_diffmm(tmp_path)
    # Entries of 2.0, an explicit zero and a duplicate entry.
    m = sp.coo_matrix((np.array([2.0, 0.0, 1.0, 1.0, 1.0, 0.5, 3.0]),
                       (np.array([0, 0, 0, 1, 1, 2, 1]),
                        np.array([0, 4, 1, 1, 4, 3, 4]))), shape=(3, 5))
    write_pickle(os.path.join(folder, 'trnMat.pkl'), m)
    data = read_diffmm(folder)
    assert split_pairs(data, 'train') == [(0, 0), (0, 1), (1, 1), (1, 4),
                                          (2, 3)]


@pytest.mark.parametrize('fmt', ['csr', 'csc'])
def test_read_diffmm_other_sparse_formats(tmp_path, fmt):
    folder = write_diffmm(tmp_path)
    m = coo([(u, i) for u, i, s in ROWS if s == 0], (3, 5)).asformat(fmt)
    write_pickle(os.path.join(folder, 'trnMat.pkl'), m)
    check_toy(read_diffmm(folder))


def test_read_diffmm_old_module_paths(tmp_path):
    # Files written by old SciPy/NumPy name `scipy.sparse.coo` and
    # `numpy.core.multiarray`: read without a (deprecation) warning.
    folder = write_diffmm(tmp_path)
    m = coo([(u, i) for u, i, s in ROWS if s == 1], (3, 5))
    raw = pickle.dumps(m, protocol=2)  # newline-terminated GLOBAL opcodes
    assert b'scipy.sparse._coo\n' in raw
    raw = raw.replace(b'scipy.sparse._coo\n', b'scipy.sparse.coo\n')
    raw = raw.replace(b'numpy._core.', b'numpy.core.')
    with open(os.path.join(folder, 'valMat.pkl'), 'wb') as f:
        f.write(raw)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        data = read_diffmm(folder)
    check_toy(data)


def test_diffmm_mismatched_shapes(tmp_path):
    folder = write_diffmm(tmp_path)
    write_pickle(os.path.join(folder, 'tstMat.pkl'),
                 coo([(0, 3), (1, 2), (2, 4)], (3, 6)))
    with pytest.raises(DataFormatError) as e:
        read_diffmm(folder)
    msg = str(e.value)
    assert msg.startswith(os.path.join(folder, 'tstMat.pkl'))
    assert '(3, 6)' in msg and '(3, 5)' in msg and 'trnMat.pkl' in msg


def test_diffmm_truncated_pickle(tmp_path):
    folder = write_diffmm(tmp_path)
    path = os.path.join(folder, 'valMat.pkl')
    raw = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(raw[:len(raw) // 2])
    with pytest.raises(DataFormatError) as e:
        read_diffmm(folder)
    assert str(e.value).startswith(path)
    assert 'truncated' in str(e.value)


@pytest.mark.parametrize('content', [b'hello, not a pickle\n',
                                     b'\x89PNG\r\n\x1a\n', b''])
def test_diffmm_not_a_pickle(tmp_path, content):
    folder = write_diffmm(tmp_path)
    path = os.path.join(folder, 'tstMat.pkl')
    with open(path, 'wb') as f:
        f.write(content)
    with pytest.raises(DataFormatError) as e:
        read_diffmm(folder)
    assert str(e.value).startswith(path)
    assert 'not a valid pickle' in str(e.value) or 'empty' in str(e.value)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_diffmm_forbidden_pickle_is_not_executed(tmp_path):
    folder = write_diffmm(tmp_path / 'data')
    marker = tmp_path / 'pwned'
    path = os.path.join(folder, 'trnMat.pkl')
    write_pickle(path, _Exploit(marker))
    with pytest.raises(DataFormatError) as e:
        read_diffmm(folder)
    msg = str(e.value)
    assert msg.startswith(path)
    assert 'forbidden' in msg and 'system' in msg
    assert not marker.exists()


@pytest.mark.parametrize('obj', [{'a': 1}, np.eye(3, 5), [1, 2, 3]])
def test_diffmm_pickle_of_wrong_type(tmp_path, obj):
    folder = write_diffmm(tmp_path)
    path = os.path.join(folder, 'valMat.pkl')
    write_pickle(path, obj)
    with pytest.raises(DataFormatError) as e:
        read_diffmm(folder)
    msg = str(e.value)
    assert msg.startswith(path)
    assert 'expected a pickled scipy.sparse matrix' in msg


def test_diffmm_pickled_class_not_allowed(tmp_path):
    # A class outside the allow-list is refused even if harmless.
    folder = write_diffmm(tmp_path)
    path = os.path.join(folder, 'valMat.pkl')
    write_pickle(path, sp.dok_matrix((3, 5)))
    with pytest.raises(DataFormatError, match='forbidden') as e:
        read_diffmm(folder)
    assert str(e.value).startswith(path)


def test_diffmm_index_out_of_range(tmp_path):
    folder = write_diffmm(tmp_path)
    m = coo([(0, 3), (1, 2)], (3, 5))
    m.col[1] = 7  # corrupt, as a hand-edited or foreign file could be
    path = os.path.join(folder, 'tstMat.pkl')
    write_pickle(path, m)
    with pytest.raises(DataFormatError) as e:
        read_diffmm(folder)
    msg = str(e.value)
    assert msg.startswith(path)
    assert 'out of range [0, 5)' in msg and '7' in msg


def test_diffmm_empty_split(tmp_path):
    folder = write_diffmm(tmp_path)
    path = os.path.join(folder, 'valMat.pkl')
    write_pickle(path, sp.coo_matrix((3, 5)))
    with pytest.raises(DataFormatError) as e:
        read_diffmm(folder)
    assert str(e.value).startswith(path)
    assert 'the val split is empty' in str(e.value)


def test_diffmm_pair_in_two_splits(tmp_path):
    folder = write_diffmm(tmp_path)
    write_pickle(os.path.join(folder, 'tstMat.pkl'),
                 coo([(0, 3), (1, 2), (2, 4), (0, 0)], (3, 5)))
    with pytest.raises(DataFormatError) as e:
        read_diffmm(folder)
    msg = str(e.value)
    assert 'tstMat.pkl' in msg and 'trnMat.pkl' in msg
    assert msg.startswith(os.path.join(folder, ''))
    assert 'two splits' in msg and '(0, 0) in train and test' in msg


def test_diffmm_feature_rows_mismatch(tmp_path):
    folder = write_diffmm(tmp_path, features={'audio': np.zeros((7, 3))})
    with pytest.raises(DataFormatError) as e:
        read_diffmm(folder)
    msg = str(e.value)
    assert msg.startswith(os.path.join(folder, 'audio_feat.npy'))
    assert '7 rows' in msg and '5 items' in msg


def test_diffmm_missing_file(tmp_path):
    folder = write_diffmm(tmp_path)
    os.remove(os.path.join(folder, 'valMat.pkl'))
    with pytest.raises(DataFormatError, match='missing valMat.pkl'):
        read_diffmm(folder)


# Layout detection ############################################################

def test_detect_format_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such dataset folder'):
        detect_format(str(tmp_path / 'absent'))
    (tmp_path / 'notes.txt').write_text('hi')
    with pytest.raises(DataFormatError) as e:
        detect_format(str(tmp_path))
    msg = str(e.value)
    assert msg.startswith(str(tmp_path))
    assert '.inter' in msg and 'trnMat.pkl' in msg and 'notes.txt' in msg


# Real data ###################################################################

def test_real_tiktok(real_dataset):
    folder = real_dataset('tiktok')
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # no SciPy deprecation warning
        data = read_diffmm(str(folder))
    assert (num_users(data), num_items(data)) == (9308, 6710)
    store = data[INTERACTS]
    # 10 cold users: their 5 validation and 5 test interactions are dropped
    # (3,051 and 6,130 in the files).
    assert [int(store[f'{s}_mask'].sum()) for s in ('train', 'val', 'test')] \
        == [59541, 3046, 6125]
    assert (data.dropped_cold_users, data.dropped_cold_interactions) == \
        (10, 10)
    feats = item_features(data)
    assert list(feats) == ['image', 'audio']
    for x in feats.values():
        assert x.shape == (6710, 128) and x.dtype == torch.float32


@pytest.mark.parametrize('name,users,items,counts', [
    ('baby', 19445, 7050, [118551, 20559, 21682]),
    ('sports', 35598, 18357, [218409, 40029, 37899]),
])
def test_real_mmrec(real_dataset, name, users, items, counts):
    data = read_mmrec(str(real_dataset(name)))
    assert data.name == name
    assert (num_users(data), num_items(data)) == (users, items)
    store = data[INTERACTS]
    assert [int(store[f'{s}_mask'].sum()) for s in ('train', 'val', 'test')] \
        == counts
    assert modalities(data) == []


def test_mmrec_utf8_bom_header(tmp_path):
    path = tmp_path / 'toy.inter'
    lines = ['userID\titemID\tx_label']
    lines += [f'{u}\t{i}\t{s}' for u, i, s in ROWS]
    path.write_bytes(b'\xef\xbb\xbf' + ('\n'.join(lines) + '\n').encode())
    check_toy(read_mmrec(str(tmp_path)))


def test_mmrec_id_gaps_warn(tmp_path, caplog):
    rows = [(u if u < 2 else 5, i, s) for u, i, s in ROWS]  # no users 2-4
    folder = write_mmrec(tmp_path, rows=rows)
    with caplog.at_level('WARNING', logger='pyg_mmrec.data.readers'):
        data = read_mmrec(folder)
    assert num_users(data) == 6
    assert '3 of the 6 user ids have no interaction' in caplog.text


# Encodings, id spaces, cold users ############################################

def test_mmrec_gzipped_inter_refused(tmp_path):
    path = tmp_path / 'toy.inter'
    write_inter(path, ROWS)
    path.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(DataFormatError, match='gzip-compressed: decompress '
                       'it first') as e:
        read_mmrec(str(tmp_path))
    assert str(e.value).startswith(str(path))


@pytest.mark.parametrize('line,lineno', [(1, 1), (6, 6), (12, 12)])
def test_mmrec_not_utf8(tmp_path, line, lineno):
    path = tmp_path / 'toy.inter'
    write_inter(path, ROWS, header='userID\titemID\tx_label\tcomment')
    lines = path.read_bytes().split(b'\n')
    lines.insert(11, b'2\t0\t0\tok')
    lines[line - 1] += b'\t\xe9t\xe9'  # Latin-1, not UTF-8
    path.write_bytes(b'\n'.join(lines))
    with pytest.raises(DataFormatError) as e:
        read_mmrec(str(tmp_path))
    assert str(e.value).startswith(f'{path}:{lineno}: not valid UTF-8')


def test_mmrec_several_inter_files_logs_the_choice(tmp_path, caplog):
    folder = tmp_path / 'toy'
    write_mmrec(folder, name='toy')
    write_mmrec(folder, rows=ROWS + [(3, 5, 0)], name='old')
    with caplog.at_level('WARNING', logger='pyg_mmrec.data.readers'):
        data = read_mmrec(str(folder))
    assert num_users(data) == 3
    assert "reading toy.inter (named after the folder) and ignoring " \
        "old.inter" in caplog.text
    write_mmrec(folder, name='new')
    os.remove(folder / 'toy.inter')
    with pytest.raises(DataFormatError) as e:
        read_mmrec(str(folder))
    msg = str(e.value)
    assert 'new.inter, old.inter' in msg and "rename the one to read to " \
        "'toy.inter'" in msg and 'keep only one' in msg


@pytest.mark.parametrize('column', ['userID', 'itemID'])
def test_mmrec_huge_ids_refused_before_allocation(tmp_path, column):
    big = 2 ** 40
    extra = (big, 0, 0) if column == 'userID' else (0, big, 0)
    folder = write_mmrec(tmp_path, rows=ROWS + [extra])
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError) as e:
            read_mmrec(folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 ** 24  # nothing sized by the largest id
    msg = str(e.value)
    assert msg.startswith(os.path.join(folder, 'toy.inter'))
    kind = 'user' if column == 'userID' else 'item'
    assert f'the {kind} ids span 0..{big}' in msg
    assert 'not contiguous' in msg


def test_diffmm_huge_shape_refused(tmp_path):
    shape = (2 ** 40, 5)
    folder = write_diffmm(tmp_path, shape=shape)
    with pytest.raises(DataFormatError) as e:
        read_diffmm(folder)
    msg = str(e.value)
    assert msg.startswith(os.path.join(folder, 'trnMat.pkl'))
    assert 'user ids span' in msg and 'not contiguous' in msg
