"""The DiffMM reader (:func:`~pyg_mmrec.data.read_diffmm`): pickled sparse
split matrices (formats, old module paths, binarising) and every refused
pickle (truncated, foreign, forbidden, of the wrong type or shape)."""
import os
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from readers_helpers import (
    ROWS,
    check_toy,
    coo,
    split_pairs,
    toy_features,
    write_diffmm,
    write_pickle,
)

from pyg_mmrec.data import (
    DataFormatError,
    detect_format,
    read_diffmm,
    read_folder,
)

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

