"""The MMRec reader (:func:`~pyg_mmrec.data.read_mmrec`): the ``.inter``
file's columns, ids, split labels and pairs, and the item feature files,
each bad case refused with the file's name."""
import os

import numpy as np
import pytest
from readers_helpers import (
    ROWS,
    check_toy,
    toy_features,
    write_inter,
    write_mmrec,
)

from pyg_mmrec.data import (
    DataFormatError,
    build_hetero_data,
    detect_format,
    modalities,
    num_users,
    read_folder,
    read_mmrec,
)

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

