import numpy as np
import pytest

from pyg_mmrec.data.preprocess import (
    first_of_duplicates,
    k_core,
    keep_min_rating,
    reindex_by_first_appearance,
)


def test_min_rating():
    assert keep_min_rating(np.array([1., 4., 5., 3.9]), 4).tolist() == [
        False, True, True, False]
    assert keep_min_rating(np.array([0., 5.]), 0).all()


def test_duplicates_keep_earliest():
    user = np.array([0, 1, 0, 0, 1])
    item = np.array([2, 2, 2, 3, 2])
    time = np.array([9, 5, 3, 1, 5])
    # (0, 2) at times 9, 3 -> row 2; (1, 2) tie at 5 -> first row 1.
    assert first_of_duplicates(user, item, time).tolist() == [1, 2, 3]


def is_fixed_point(user, item, keep, ku, ki):
    return (np.bincount(user[keep])[np.unique(user[keep])].min() >= ku and
            np.bincount(item[keep])[np.unique(item[keep])].min() >= ki)


def test_k_core_needs_two_rounds():
    # 2-core. Users 0, 1, 2 each rate items 0 and 1; user 3 rates items 1
    # and 2; item 2 has only user 3. Round 1 drops item 2 (degree 1); then
    # user 3 has 1 interaction and goes in round 2; items 0, 1 keep 3 each.
    user = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    item = np.array([0, 1, 0, 1, 0, 1, 1, 2])
    keep, rounds = k_core(user, item, 2, 2)
    assert keep.tolist() == [True] * 6 + [False, False]
    assert rounds == 2
    assert is_fixed_point(user, item, keep, 2, 2)
    again, more = k_core(user[keep], item[keep], 2, 2)
    assert again.all() and more == 0


@pytest.mark.parametrize('seed', [0, 1])
def test_k_core_random_graph_is_fixed_point(seed):
    rng = np.random.default_rng(seed)
    user = rng.integers(0, 300, 3000) ** 2 // 300
    item = rng.integers(0, 200, 3000)
    keep, rounds = k_core(user, item, 5, 4)
    assert rounds >= 1 and keep.any()
    assert is_fixed_point(user, item, keep, 5, 4)
    assert k_core(user[keep], item[keep], 5, 4)[0].all()
    # Maximal: the k-core of the full graph contains no fewer edges.
    nothing, _ = k_core(user, item, 10**6, 1)
    assert not nothing.any()


def test_reindex_by_first_appearance():
    new, old = reindex_by_first_appearance(np.array([7, 3, 7, 9, 3]))
    assert new.tolist() == [0, 1, 0, 2, 1] and old.tolist() == [7, 3, 9]
