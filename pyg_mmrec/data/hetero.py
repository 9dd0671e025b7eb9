"""The library's data contract: a :class:`~torch_geometric.data.HeteroData`
with ``user`` and ``item`` nodes, per-modality item features ``x_<modality>``
and one ``(user, interacts, item)`` edge type carrying every interaction with
boolean ``train_mask``/``val_mask``/``test_mask`` (plus its reverse
``(item, rev_interacts, user)`` for message passing)."""
from typing import Dict, List, Mapping, Optional

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

USER, ITEM = 'user', 'item'
INTERACTS = (USER, 'interacts', ITEM)
REV_INTERACTS = (ITEM, 'rev_interacts', USER)
SPLITS = ('train', 'val', 'test')
#: Canonical modality order: models that weight modalities index them so.
MODALITY_ORDER = ('image', 'text', 'audio')


class DataFormatError(ValueError):
    r"""Raised when an input file is malformed; the message names the file
    and the problem."""


def build_hetero_data(
    user: np.ndarray,
    item: np.ndarray,
    split: np.ndarray,
    num_users: int,
    num_items: int,
    features: Optional[Mapping[str, np.ndarray]] = None,
    name: str = 'dataset',
    sources: Optional[Mapping[str, str]] = None,
) -> HeteroData:
    r"""Validates interactions and features and builds the dataset's
    :class:`HeteroData`.

    Args:
        user (np.ndarray): User id of each interaction.
        item (np.ndarray): Item id of each interaction.
        split (np.ndarray): Split of each interaction, :obj:`0` (train),
            :obj:`1` (validation) or :obj:`2` (test).
        num_users (int): Number of users.
        num_items (int): Number of items.
        features (Mapping[str, np.ndarray], optional): Item features per
            modality, each of shape :obj:`[num_items, d]`.
        name (str): Dataset name, stored as :obj:`data.name`.
        sources (Mapping[str, str], optional): File names used in error
            messages: key :obj:`"interactions"` (or one per split,
            :obj:`"train"`, :obj:`"val"`, :obj:`"test"`) and one per modality.
    """
    sources = dict(sources or {})
    where = sources.get('interactions', name)
    user = np.asarray(user, dtype=np.int64).reshape(-1)
    item = np.asarray(item, dtype=np.int64).reshape(-1)
    split = np.asarray(split, dtype=np.int64).reshape(-1)
    if not (len(user) == len(item) == len(split)):
        raise DataFormatError(f"{where}: columns have different lengths")
    for ids, kind, n in ((user, 'user', num_users), (item, 'item', num_items)):
        bad = (ids < 0) | (ids >= n)
        if bad.any():
            raise DataFormatError(
                f"{where}: {int(bad.sum())} {kind} id(s) out of range "
                f"[0, {n}), e.g. {int(ids[bad][0])}")
    bad = (split < 0) | (split > 2)
    if bad.any():
        raise DataFormatError(f"{where}: split labels must be 0 (train), 1 "
                              f"(valid) or 2 (test), found {int(split[bad][0])}")
    for code, split_name in enumerate(SPLITS):
        if not (split == code).any():
            src = sources.get(split_name, where)
            raise DataFormatError(f"{src}: the {split_name} split is empty")

    key = user * num_items + item
    order = np.lexsort((split, key))
    key, user, item, split = key[order], user[order], item[order], split[order]
    dup = np.flatnonzero(key[1:] == key[:-1])
    if len(dup) > 0:
        j = dup[0]
        u, i = int(user[j]), int(item[j])
        a, b = SPLITS[split[j]], SPLITS[split[j + 1]]
        if a != b:
            files = {sources.get(a, where), sources.get(b, where)}
            raise DataFormatError(
                f"{' and '.join(sorted(files))}: {len(dup)} (user, item) "
                f"pair(s) appear in two splits, e.g. ({u}, {i}) in {a} and {b}")
        raise DataFormatError(
            f"{sources.get(a, where)}: {len(dup)} duplicate (user, item) "
            f"pair(s), e.g. ({u}, {i}) twice in {a}")

    data = HeteroData()
    data.name = name
    data[USER].num_nodes = int(num_users)
    data[ITEM].num_nodes = int(num_items)
    for modality, feat in sorted((features or {}).items(),
                                 key=lambda kv: _modality_rank(kv[0])):
        src = sources.get(modality, f"{modality} features")
        feat = np.asarray(feat)
        if feat.ndim != 2:
            raise DataFormatError(
                f"{src}: expected a 2-d [num_items, dim] array, got shape "
                f"{tuple(feat.shape)}")
        if feat.shape[0] != num_items:
            raise DataFormatError(
                f"{src}: has {feat.shape[0]} rows but the dataset has "
                f"{num_items} items")
        if not np.issubdtype(feat.dtype, np.number):
            raise DataFormatError(f"{src}: non-numeric dtype {feat.dtype}")
        feat = torch.from_numpy(np.ascontiguousarray(feat, dtype=np.float32))
        finite = torch.isfinite(feat)
        if not bool(finite.all()):
            rows = (~finite).any(dim=1).nonzero().view(-1)
            raise DataFormatError(
                f"{src}: {rows.numel()} row(s) contain NaN or inf values, "
                f"e.g. item {int(rows[0])}")
        data[ITEM][f'x_{modality}'] = feat

    edge_index = torch.from_numpy(np.stack([user, item]))
    split_t = torch.from_numpy(split)
    store = data[INTERACTS]
    store.edge_index = edge_index
    for code, split_name in enumerate(SPLITS):
        store[f'{split_name}_mask'] = split_t == code
    rev = data[REV_INTERACTS]
    rev.edge_index = edge_index.flip(0)
    for split_name in SPLITS:
        rev[f'{split_name}_mask'] = store[f'{split_name}_mask']
    return data


def _modality_rank(modality: str):
    if modality in MODALITY_ORDER:
        return (MODALITY_ORDER.index(modality), modality)
    return (len(MODALITY_ORDER), modality)


def num_users(data: HeteroData) -> int:
    return int(data[USER].num_nodes)


def num_items(data: HeteroData) -> int:
    return int(data[ITEM].num_nodes)


def modalities(data: HeteroData) -> List[str]:
    r"""The item modalities present in :obj:`data`, in canonical order."""
    names = [k[2:] for k in data[ITEM].keys() if k.startswith('x_')]
    return sorted(names, key=_modality_rank)


def item_features(data: HeteroData) -> Dict[str, Tensor]:
    r"""Maps each modality to its :obj:`[num_items, d]` feature tensor."""
    return {m: data[ITEM][f'x_{m}'] for m in modalities(data)}


def require_features(data: HeteroData, model: str) -> Dict[str, Tensor]:
    r"""The item features of :obj:`data`, or a clear error naming
    :obj:`model` when it has none."""
    feats = item_features(data)
    if not feats:
        raise ValueError(
            f"{model} needs item features (x_image, x_text, x_audio, ...) but "
            f"dataset '{getattr(data, 'name', '?')}' has none; use a dataset "
            f"with *_feat.npy files or an ID-only model such as lightgcn")
    return feats


def split_edge_index(data: HeteroData, split: str = 'train') -> Tensor:
    r"""The :obj:`[2, E_split]` (user, item) pairs of one split, sorted by
    user then item."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    store = data[INTERACTS]
    return store.edge_index[:, store[f'{split}_mask']]
