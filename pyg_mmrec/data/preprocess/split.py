r"""Per-user train/validation/test splits, as MMRec ``x_label`` codes
:obj:`0` (train), :obj:`1` (validation), :obj:`2` (test)."""
from typing import Optional

import numpy as np

SPLIT_METHODS = ('random', 'chrono', 'loo')


def _rank_within_user(user_sorted: np.ndarray):
    # Rank of each row within its user (rows sorted by user), user sizes.
    counts = np.bincount(user_sorted)
    start = np.cumsum(counts) - counts
    return np.arange(len(user_sorted)) - start[user_sorted], counts


def mmrec_split_sizes(n: np.ndarray):
    r"""Validation and test sizes per user of :math:`n` interactions, as in
    MMRec's released split (``models.md`` section 1.1): for :math:`n < 10`
    one test and (when :math:`n \geq 2`) one validation interaction, else
    :math:`v_t = \lfloor 0.2 n \rfloor`, :math:`\text{val} =
    \lfloor v_t / 2 \rfloor`, :math:`\text{test} = v_t - \text{val}`."""
    n = np.asarray(n, dtype=np.int64)
    vt = n // 5  # == int(0.2 * n), exactly
    small = n < 10
    val = np.where(small, (n >= 2).astype(np.int64), vt // 2)
    test = np.where(small, 1, vt - vt // 2)
    return val, test


def split_interactions(user: np.ndarray, time: Optional[np.ndarray] = None,
                       method: str = 'random', seed: int = 0) -> np.ndarray:
    r"""Assigns each interaction to train (:obj:`0`), validation (:obj:`1`)
    or test (:obj:`2`), per user; deterministic for a :obj:`seed`.

    * :obj:`"random"`: MMRec's split (``models.md`` section 1.1): shuffle
      each user's interactions, the last ones go to test, the ones before
      to validation, sizes from :func:`mmrec_split_sizes` (users with
      :math:`n < 10`: one test, one validation, the rest train; so a user
      with 2 interactions has none in train, as in MMRec).
    * :obj:`"chrono"`: the same sizes with the user's interactions sorted
      by time (ties in input order): the latest go to test.
    * :obj:`"loo"`: leave-one-out: the latest interaction is test, the
      second latest validation, the rest train; users with fewer than 3
      interactions keep all of them in train.

    Args:
        user (np.ndarray): User id per interaction.
        time (np.ndarray, optional): Timestamps (:obj:`"chrono"`,
            :obj:`"loo"`).
        method (str): One of :obj:`SPLIT_METHODS`. (default:
            :obj:`"random"`)
        seed (int): Seed of the :obj:`"random"` shuffle. (default: :obj:`0`)
    """
    user = np.asarray(user, dtype=np.int64)
    if method not in SPLIT_METHODS:
        raise ValueError(f"unknown split {method!r}; expected one of "
                         f"{SPLIT_METHODS}")
    if method == 'random':
        shuffle = np.random.default_rng(seed).random(len(user))
        order = np.lexsort((shuffle, user))
    else:
        if time is None:
            raise ValueError(f"the {method!r} split needs timestamps")
        order = np.lexsort((np.asarray(time), user))  # stable for ties
    user_sorted = user[order]
    rank, n = _rank_within_user(user_sorted)
    if method == 'loo':
        val = test = (n >= 3).astype(np.int64)
    else:
        val, test = mmrec_split_sizes(n)
    # Per-user boundaries, looked up per row: [train | val | test].
    label_sorted = (rank >= (n - test - val)[user_sorted]).astype(np.int8)
    label_sorted += rank >= (n - test)[user_sorted]
    del rank, user_sorted
    label = np.empty(len(user), dtype=np.int8)
    label[order] = label_sorted
    return label
