import os
import pickle
import stat

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch_geometric.data import HeteroData

from pyg_mmrec.data import (
    INTERACTS,
    DataFormatError,
    MMRecDataset,
    available_datasets,
    dataset_statistics,
    default_cache_dir,
    default_root,
    item_features,
    load_dataset,
    make_synthetic,
    num_items,
    num_users,
    readers,
)

# user, item, x_label (the same toy data as readers_helpers.py)
ROWS = [
    (0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 2),
    (1, 1, 0), (1, 4, 0), (1, 0, 1), (1, 2, 2),
    (2, 3, 0), (2, 4, 2),
]


def toy_features(num=5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        'image': rng.standard_normal((num, 6)).astype(np.float32),
        'text': rng.standard_normal((num, 4)).astype(np.float32),
    }


def write_features(folder, features):
    for modality, feat in (features or {}).items():
        np.save(os.path.join(folder, f'{modality}_feat.npy'), feat)


def write_mmrec(folder, rows=ROWS, features=None, name='toy'):
    os.makedirs(folder, exist_ok=True)
    lines = ['userID\titemID\tx_label']
    lines += [f'{u}\t{i}\t{s}' for u, i, s in rows]
    with open(os.path.join(folder, f'{name}.inter'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    write_features(folder, features)
    return str(folder)


def write_diffmm(folder, rows=ROWS, shape=(3, 5), features=None):
    os.makedirs(folder, exist_ok=True)
    for code, f in enumerate(('trnMat.pkl', 'valMat.pkl', 'tstMat.pkl')):
        pairs = np.array([(u, i) for u, i, s in rows if s == code])
        mat = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                            shape=shape)
        with open(os.path.join(folder, f), 'wb') as fp:
            pickle.dump(mat, fp)
    write_features(folder, features)
    return str(folder)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    path = tmp_path / 'cache'
    monkeypatch.setenv('PYG_MMREC_CACHE', str(path))
    monkeypatch.delenv('PYG_MMREC_DATA', raising=False)
    return path


@pytest.fixture
def count_reads(monkeypatch):
    calls = []
    for fmt in ('mmrec', 'diffmm'):
        original = getattr(readers, f'read_{fmt}')

        def counted(*args, _original=original, **kwargs):
            calls.append(args[0])
            return _original(*args, **kwargs)

        monkeypatch.setattr(readers, f'read_{fmt}', counted)
    return calls


def assert_same(a, b):
    assert a.name == b.name
    assert (num_users(a), num_items(a)) == (num_users(b), num_items(b))
    for key in ('edge_index', 'train_mask', 'val_mask', 'test_mask'):
        assert torch.equal(a[INTERACTS][key], b[INTERACTS][key])
    fa, fb = item_features(a), item_features(b)
    assert list(fa) == list(fb)
    for m in fa:
        assert torch.equal(fa[m], fb[m])


@pytest.mark.parametrize('writer,fmt', [(write_mmrec, 'mmrec'),
                                        (write_diffmm, 'diffmm')])
def test_cache_is_reused(tmp_path, cache, count_reads, writer, fmt):
    folder = writer(tmp_path / 'toy', features=toy_features())
    first = MMRecDataset(folder)
    assert first.format == fmt and len(first) == 1
    assert len(count_reads) == 1
    assert first.processed_dir.startswith(str(cache))
    second = MMRecDataset(folder)
    assert len(count_reads) == 1  # served from the cache
    assert second.processed_dir == first.processed_dir
    assert_same(first[0], second[0])
    assert_same(second[0], getattr(readers, f'read_{fmt}')(folder))


def test_cache_invalidated_when_raw_file_changes(tmp_path, cache,
                                                 count_reads):
    folder = write_mmrec(tmp_path / 'toy')
    first = MMRecDataset(folder)
    assert num_users(first[0]) == 3
    # Rewrite with different content (and size).
    write_mmrec(folder, rows=ROWS + [(3, 0, 0), (3, 1, 1), (3, 2, 2)])
    second = MMRecDataset(folder)
    assert len(count_reads) == 2
    assert num_users(second[0]) == 4
    assert second.processed_dir != first.processed_dir
    # The stale cache of the same folder is removed.
    assert not os.path.exists(first.processed_dir)
    assert len(os.listdir(cache)) == 1


def test_cache_invalidated_by_mtime_and_new_feature_file(tmp_path,
                                                         count_reads):
    folder = write_mmrec(tmp_path / 'toy')
    MMRecDataset(folder)
    path = os.path.join(folder, 'toy.inter')
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    MMRecDataset(folder)
    assert len(count_reads) == 2
    np.save(os.path.join(folder, 'image_feat.npy'), toy_features()['image'])
    data = MMRecDataset(folder)[0]
    assert len(count_reads) == 3
    assert list(item_features(data)) == ['image']


def test_cache_keyed_by_folder(tmp_path, count_reads):
    a = MMRecDataset(write_mmrec(tmp_path / 'a', name='toy'))
    b = MMRecDataset(write_mmrec(tmp_path / 'b', name='toy'))
    assert a.processed_dir != b.processed_dir
    assert os.path.exists(a.processed_dir)  # not removed as stale
    assert len(count_reads) == 2


def test_read_only_raw_folder(tmp_path, cache):
    folder = write_diffmm(tmp_path / 'toy')
    mode = os.stat(folder).st_mode
    os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR)
    try:
        data = load_dataset(folder)
    finally:
        os.chmod(folder, mode)
    assert sorted(os.listdir(folder)) == ['trnMat.pkl', 'tstMat.pkl',
                                          'valMat.pkl']
    assert num_users(data) == 3


def test_unwritable_cache_falls_back(tmp_path, monkeypatch):
    blocker = tmp_path / 'file'
    blocker.write_text('')  # a file where the cache folder should go
    monkeypatch.setenv('PYG_MMREC_CACHE', str(blocker / 'cache'))
    folder = write_mmrec(tmp_path / 'toy')
    assert num_users(load_dataset(folder)) == 3


def test_transform_and_pre_transform(tmp_path, count_reads):
    folder = write_mmrec(tmp_path / 'toy')

    def pre_transform(data):
        data.tag = 'pre'
        return data

    ds = MMRecDataset(folder, pre_transform=pre_transform)
    assert ds[0].tag == 'pre'
    plain = MMRecDataset(folder)
    assert 'tag' not in plain[0]
    assert len(count_reads) == 2


class _Payload:
    r"""Unpickling this opens (creates) :obj:`marker`: a stand-in for any
    code a crafted cache file could run."""
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def write_torch_file(path, obj):
    # torch.save pickles with the standard pickler: the payload is kept.
    torch.save(obj, path)


@pytest.mark.parametrize('target', ['data.pt', 'pre_transform.pt'])
def test_crafted_cache_file_is_not_executed(tmp_path, cache, count_reads,
                                            caplog, target):
    folder = write_mmrec(tmp_path / 'toy', features=toy_features())
    first = MMRecDataset(folder)
    marker = tmp_path / 'MARKER'
    write_torch_file(os.path.join(first.processed_dir, target),
                     (_Payload(marker), None, HeteroData))
    with caplog.at_level('WARNING', logger='pyg_mmrec.data'):
        second = MMRecDataset(folder)
    assert not marker.exists()
    assert_same(second[0], first[0])
    if target == 'data.pt':  # refused, then re-processed
        assert len(count_reads) == 2
        assert 'unusable dataset cache' in caplog.text
        assert 'processing' in caplog.text
        third = MMRecDataset(folder)  # the re-processed cache is used
        assert len(count_reads) == 2
        assert_same(third[0], first[0])
    else:  # never read: the cache key covers the pre_transform
        assert len(count_reads) == 1


@pytest.mark.parametrize('content', [b'', b'not a torch file',
                                     b'PK\x03\x04truncated zip'])
def test_corrupt_cache_is_reprocessed(tmp_path, cache, count_reads, caplog,
                                      content):
    folder = write_diffmm(tmp_path / 'toy')
    first = MMRecDataset(folder)
    with open(first.processed_paths[0], 'wb') as f:
        f.write(content)
    with caplog.at_level('WARNING', logger='pyg_mmrec.data'):
        second = MMRecDataset(folder)
    assert len(count_reads) == 2
    assert 'unusable dataset cache' in caplog.text
    assert_same(second[0], first[0])


def test_cache_of_unexpected_content_is_reprocessed(tmp_path, cache,
                                                    count_reads):
    folder = write_mmrec(tmp_path / 'toy')
    first = MMRecDataset(folder)
    torch.save({'weights': torch.zeros(3)}, first.processed_paths[0])
    assert_same(MMRecDataset(folder)[0], first[0])
    assert len(count_reads) == 2


def test_bad_data_error_propagates(tmp_path, cache):
    folder = write_mmrec(tmp_path / 'toy', rows=ROWS + [(0, 0, 1)])
    with pytest.raises(DataFormatError, match='two splits'):
        load_dataset(folder)
    with pytest.raises(DataFormatError):
        load_dataset(str(tmp_path))  # not a dataset folder


def test_load_dataset_resolution(tmp_path, monkeypatch):
    root = tmp_path / 'root'
    write_mmrec(root / 'toy')
    write_diffmm(root / 'tok', features=toy_features())
    (root / 'junk').mkdir()
    assert load_dataset('toy', root=str(root)).name == 'toy'
    assert load_dataset(str(root / 'tok')).name == 'tok'
    monkeypatch.setenv('PYG_MMREC_DATA', str(root))
    assert default_root() == str(root)
    assert load_dataset('tok').name == 'tok'
    monkeypatch.delenv('PYG_MMREC_DATA')
    assert default_root() == 'datasets'
    monkeypatch.chdir(tmp_path)
    os.symlink(root, tmp_path / 'datasets')
    assert load_dataset('toy').name == 'toy'


def test_load_dataset_missing(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_dataset('nope', root=str(tmp_path))
    msg = str(e.value)
    assert os.path.join(str(tmp_path), 'nope') in msg
    assert '--data-root' in msg and 'PYG_MMREC_DATA' in msg
    with pytest.raises(FileNotFoundError, match='PYG_MMREC_DATA'):
        load_dataset(str(tmp_path / 'absent' / 'x'))


def test_load_synthetic():
    data = load_dataset('synthetic', num_users=100, num_items=60, seed=1)
    assert (num_users(data), num_items(data)) == (100, 60)
    ref = make_synthetic(num_users=100, num_items=60, seed=1)
    assert_same(data, ref)
    with pytest.raises(TypeError, match='synthetic'):
        load_dataset('baby', num_users=5)


def test_available_datasets(tmp_path):
    write_mmrec(tmp_path / 'b')
    write_diffmm(tmp_path / 'a')
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'readme.md').write_text('x')
    assert available_datasets(str(tmp_path)) == ['a', 'b', 'synthetic']
    assert available_datasets(str(tmp_path / 'absent')) == ['synthetic']


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv('PYG_MMREC_CACHE', str(tmp_path / 'c'))
    assert default_cache_dir() == str(tmp_path / 'c')
    monkeypatch.delenv('PYG_MMREC_CACHE')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'x'))
    assert default_cache_dir() == str(tmp_path / 'x' / 'pyg_mmrec')
    monkeypatch.delenv('XDG_CACHE_HOME')
    assert default_cache_dir() == os.path.expanduser('~/.cache/pyg_mmrec')


def test_dataset_statistics(tmp_path, caplog):
    rows = ROWS + [(3, 5, 1), (3, 0, 2), (3, 1, 0)]
    rows = [r for r in rows if r != (0, 3, 2)] + [(4, 3, 2), (4, 2, 1)]
    feats = toy_features(num=6)
    with caplog.at_level('WARNING', logger='pyg_mmrec.data'):
        data = load_dataset(write_mmrec(tmp_path / 'toy', rows=rows,
                                        features=feats))
    assert 'dropping 2 validation/test interaction(s) (1 validation, 1 ' \
        'test) of 1 user(s) without any training interaction' in caplog.text
    stats = dataset_statistics(data)
    assert stats == {
        'name': 'toy',
        'users': 5,
        'items': 6,
        'interactions': 12,  # user 4's two held-out interactions dropped
        'train': 6,
        'val': 3,
        'test': 3,
        'density': 12 / 30,
        'modalities': {'image': 6, 'text': 4},
        'users_without_train': 1,  # user 4, cold: now without interactions
        'items_without_train': 2,  # items 2 and 5
        'cold_users_dropped': 1,
        'held_out_dropped': 2,
    }


# Real data ###################################################################

REAL = {
    # TikTok: 10 cold users' 5 validation and 5 test interactions dropped.
    'tiktok': (9308, 6710, [59541, 3046, 6125], {'image': 128, 'audio': 128}),
    'baby': (19445, 7050, [118551, 20559, 21682], {}),
    'sports': (35598, 18357, [218409, 40029, 37899], {}),
}


@pytest.mark.parametrize('name', list(REAL))
def test_real_dataset_cached(real_dataset, data_root, name, count_reads):
    folder = real_dataset(name)
    users, items, counts, mods = REAL[name]
    for _ in range(2):
        data = load_dataset(name, root=str(data_root))
    assert len(count_reads) == 1  # the second load comes from the cache
    stats = dataset_statistics(data)
    assert (stats['users'], stats['items']) == (users, items)
    assert [stats[s] for s in ('train', 'val', 'test')] == counts
    assert stats['modalities'] == mods
    for x in item_features(data).values():
        assert x.dtype == torch.float32
    if name == 'tiktok':
        assert stats['users_without_train'] == 10
        assert stats['items_without_train'] == 465
        assert (stats['cold_users_dropped'], stats['held_out_dropped']) == \
            (10, 10)
    else:
        assert stats['cold_users_dropped'] == stats['held_out_dropped'] == 0
    assert_same(data, readers.read_folder(str(folder)))


def test_real_available_datasets(real_dataset, data_root):
    real_dataset('tiktok')
    names = available_datasets(str(data_root))
    assert {'tiktok', 'baby', 'sports', 'synthetic'} <= set(names)
