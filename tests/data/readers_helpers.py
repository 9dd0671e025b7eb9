"""Builders of small dataset folders for the reader tests (``test_readers_*``,
``test_hetero.py``, ``test_cli_errors_data.py``): a toy MMRec ``.inter``
file or DiffMM pickles with features, and the checks of the toy data read
back."""
import os
import pickle

import numpy as np
import scipy.sparse as sp
import torch

from pyg_mmrec.data import (
    INTERACTS,
    REV_INTERACTS,
    item_features,
    num_items,
    num_users,
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

