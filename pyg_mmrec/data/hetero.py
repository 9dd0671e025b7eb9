"""The library's data contract: a :class:`~torch_geometric.data.HeteroData`
with ``user`` and ``item`` nodes, per-modality item features ``x_<modality>``
and one ``(user, interacts, item)`` edge type carrying every interaction with
boolean ``train_mask``/``val_mask``/``test_mask`` (plus its reverse
``(item, rev_interacts, user)`` for message passing).

Rules shared by every reader (all build through :func:`build_hetero_data`):

* **Contiguous ids.** Ids index embedding tables, so they must be (close
  to) contiguous from :obj:`0`: an id space with more unused ids than
  :obj:`max(ids used, ID_SLACK)` is refused before anything sized by it is
  allocated, so raw ids such as :obj:`2**40` fail with a message instead of
  exhausting memory.
* **Cold users are not evaluated.** As MMRec's
  :obj:`filter_out_cod_start_users` option does, the validation and test
  interactions of a user without any training interaction are dropped (with
  a logged warning that counts them); the user stays a node without edges.
  Items that only appear in validation or test are kept: they are
  candidates like any other item.
"""
import logging
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

USER, ITEM = 'user', 'item'
INTERACTS = (USER, 'interacts', ITEM)
REV_INTERACTS = (ITEM, 'rev_interacts', USER)
SPLITS = ('train', 'val', 'test')
#: Canonical modality order (models that weight modalities index them so).
MODALITY_ORDER = ('image', 'text', 'audio')
#: Unused ids tolerated below the id space's end (see
#: :func:`check_contiguous_ids`), beyond as many as are used.
ID_SLACK = 1024

log = logging.getLogger(__name__)


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
    :class:`HeteroData`, edges sorted by user then item.

    Ids must be (close to) contiguous (see :obj:`check_contiguous_ids`;
    item ids are not checked when :obj:`features` are given, whose rows
    define the items). The validation and test interactions of users without
    a training interaction are dropped (see :obj:`drop_cold_users`); the
    numbers dropped are stored as :obj:`data.dropped_cold_users` and
    :obj:`data.dropped_cold_interactions`.

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
    # Feature tables of num_items rows (checked first) justify num_items.
    tensors = {m: _feature_tensor(feat, num_items, sources.get(
        m, f"{m} features")) for m, feat in (features or {}).items()}
    check_contiguous_ids(user, num_users, 'user', where)
    if not tensors:
        check_contiguous_ids(item, num_items, 'item', where)
    bad = (split < 0) | (split > 2)
    if bad.any():
        raise DataFormatError(f"{where}: split labels must be 0 (train), 1 "
                              f"(valid) or 2 (test), found "
                              f"{int(split[bad][0])}")
    _check_splits_present(split, sources, where)
    user, item, split = _sort_checking_duplicates(user, item, split,
                                                  num_items, sources, where)
    user, item, split, cold = drop_cold_users(user, item, split, num_users,
                                              where)
    if cold[1]:
        _check_splits_present(split, sources, where, after=(
            " after dropping the held-out interactions of users without "
            "training interactions"))

    data = HeteroData()
    data.name = name
    data.dropped_cold_users, data.dropped_cold_interactions = cold
    data[USER].num_nodes = int(num_users)
    data[ITEM].num_nodes = int(num_items)
    for modality in sorted(tensors, key=_modality_rank):
        data[ITEM][f'x_{modality}'] = tensors[modality]

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


def check_contiguous_ids(ids: np.ndarray, num: int, kind: str,
                         where: str) -> None:
    r"""Refuses ids (all in :obj:`[0, num)`) whose id space :obj:`num` is
    far larger than the number of distinct ids used: more than
    :obj:`max(used, ID_SLACK)` unused ids. Nothing of size :obj:`num` is
    allocated unless :obj:`num <= 2 * len(ids) + ID_SLACK`.

    Args:
        ids (np.ndarray): The ids.
        num (int): The size of the id space (e.g. :obj:`max(ids) + 1`).
        kind (str): :obj:`"user"` or :obj:`"item"`, for the message.
        where (str): The file, for the message.

    Raises:
        DataFormatError: If the ids are not (close to) contiguous.
    """
    if num <= ID_SLACK:
        return
    if num <= 2 * len(ids) + ID_SLACK:
        seen = np.zeros(num, dtype=bool)
        seen[ids] = True
        used = int(seen.sum())
        if num - used <= max(used, ID_SLACK):
            return
    else:  # so many unused ids whatever the count: no table of size num
        used = len(np.unique(ids))
    raise DataFormatError(
        f"{where}: the {kind} ids span 0..{num - 1} ({num:,} ids) but only "
        f"{used:,} distinct ones are used: the ids are not contiguous "
        f"0..n-1 (or too large); re-index them to 0..{used - 1} (as "
        f"'python -m pyg_mmrec preprocess' writes them)")


def drop_cold_users(user: np.ndarray, item: np.ndarray, split: np.ndarray,
                    num_users: int, where: str = 'dataset'
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray,
                               Tuple[int, int]]:
    r"""Drops the validation and test interactions of cold users (users
    without any training interaction), which are not evaluated, as MMRec's
    :obj:`filter_out_cod_start_users` option does; logs a warning with the
    counts when there are any.

    Args:
        user, item, split (np.ndarray): The interactions (split codes
            :obj:`0`/:obj:`1`/:obj:`2`).
        num_users (int): The number of users (ids in :obj:`[0, num_users)`).
        where (str): The file, for the message.

    Returns:
        (np.ndarray, np.ndarray, np.ndarray, (int, int)): The kept
        :obj:`user`, :obj:`item` and :obj:`split`, and the numbers of cold
        users and of held-out interactions dropped.
    """
    has_train = np.zeros(num_users, dtype=bool)
    has_train[user[split == 0]] = True
    cold = ~has_train[user]  # only held-out interactions can be cold
    dropped = int(cold.sum())
    if dropped == 0:
        return user, item, split, (0, 0)
    users = int(len(np.unique(user[cold])))
    log.warning(
        "%s: dropping %d validation/test interaction(s) (%d validation, %d "
        "test) of %d user(s) without any training interaction: cold users "
        "are not evaluated (as in MMRec)", where, dropped,
        int((split[cold] == 1).sum()), int((split[cold] == 2).sum()), users)
    keep = ~cold
    return user[keep], item[keep], split[keep], (users, dropped)


def _check_splits_present(split: np.ndarray, sources: Mapping[str, str],
                          where: str, after: str = '') -> None:
    for code, split_name in enumerate(SPLITS):
        if not (split == code).any():
            src = sources.get(split_name, where)
            raise DataFormatError(
                f"{src}: the {split_name} split is empty{after}")


def _sort_checking_duplicates(
        user: np.ndarray, item: np.ndarray, split: np.ndarray, num_items: int,
        sources: Mapping[str, str], where: str
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Sorts the interactions by user then item, refusing a (user, item)
    pair that appears twice (in one split or in two)."""
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
                f"pair(s) appear in two splits, e.g. ({u}, {i}) in {a} and "
                f"{b}")
        raise DataFormatError(
            f"{sources.get(a, where)}: {len(dup)} duplicate (user, item) "
            f"pair(s), e.g. ({u}, {i}) twice in {a}")
    return user, item, split


def _feature_tensor(feat: np.ndarray, num_items: int, src: str) -> Tensor:
    r"""Validates one modality's :obj:`[num_items, d]` features (2-d with
    :obj:`d >= 1`, numeric, finite) and returns them as float32."""
    feat = np.asarray(feat)
    if feat.ndim != 2 or feat.shape[1] == 0:
        raise DataFormatError(
            f"{src}: expected a 2-d [num_items, dim] array with dim >= 1, got"
            f" shape {tuple(feat.shape)}")
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
    return feat


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
