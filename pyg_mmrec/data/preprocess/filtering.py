r"""Vectorised interaction filtering: rating threshold, duplicate removal,
iterative k-core and contiguous re-indexing."""
from typing import Tuple

import numpy as np


def keep_min_rating(rating: np.ndarray, min_rating: float) -> np.ndarray:
    r"""Mask of the interactions kept as implicit feedback,
    :math:`r \geq r_{\min}` (:obj:`min_rating = 0` keeps every
    non-negative rating)."""
    return np.asarray(rating) >= min_rating


def first_of_duplicates(user: np.ndarray, item: np.ndarray,
                        time: np.ndarray) -> np.ndarray:
    r"""Indices (ascending) of the interactions kept when each repeated
    :obj:`(user, item)` pair is collapsed to its earliest time (ties: the
    first in input order)."""
    key = user.astype(np.int64) * (int(item.max()) + 1 if len(item) else 1) \
        + item
    order = np.lexsort((time, key))  # stable: ties keep input order
    key = key[order]
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    return np.sort(order[first])


def k_core(user: np.ndarray, item: np.ndarray, user_core: int = 5,
           item_core: int = 5) -> Tuple[np.ndarray, int]:
    r"""Iterative k-core: drops users with fewer than :obj:`user_core` and
    items with fewer than :obj:`item_core` interactions, repeatedly, until
    a fixed point where every remaining user has :math:`\geq k_u` and every
    remaining item :math:`\geq k_i` interactions.

    Returns the mask of the kept interactions and the number of rounds that
    removed something.

    Args:
        user, item (np.ndarray): Integer ids per interaction.
        user_core (int): Minimum interactions per user. (default: :obj:`5`)
        item_core (int): Minimum interactions per item. (default: :obj:`5`)
    """
    keep = np.ones(len(user), dtype=bool)
    rounds = 0
    while True:
        u_deg = np.bincount(user[keep], minlength=int(user.max()) + 1)
        i_deg = np.bincount(item[keep], minlength=int(item.max()) + 1)
        new = keep & (u_deg[user] >= user_core) & (i_deg[item] >= item_core)
        if new.sum() == keep.sum():
            return keep, rounds
        keep, rounds = new, rounds + 1


def reindex_by_first_appearance(ids: np.ndarray) -> Tuple[np.ndarray,
                                                          np.ndarray]:
    r"""Contiguous ids :math:`0, \ldots, n-1` in order of first appearance
    in :obj:`ids` (MMRec's convention, ``models.md`` section 1.1).

    Returns the new id of each entry and, for each new id, the old one.
    """
    old, first = np.unique(ids, return_index=True)
    old = old[np.argsort(first, kind='stable')]
    lookup = np.empty(int(ids.max()) + 1, dtype=np.int64)
    lookup[old] = np.arange(len(old))
    return lookup[ids], old
