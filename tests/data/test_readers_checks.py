"""Checks across both readers: layout detection, the real datasets, text
encodings (BOM, gzip, non-UTF-8), several ``.inter`` files and id spaces
(gaps, huge ids refused before allocation)."""
import gzip
import os
import tracemalloc
import warnings

import pytest
import torch
from readers_helpers import (
    ROWS,
    check_toy,
    write_diffmm,
    write_inter,
    write_mmrec,
)

from pyg_mmrec.data import (
    INTERACTS,
    DataFormatError,
    detect_format,
    item_features,
    modalities,
    num_items,
    num_users,
    read_diffmm,
    read_mmrec,
)

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


# Encodings, id spaces, cold users ############################################

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
