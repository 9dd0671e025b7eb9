import numpy as np
import pytest

from pyg_mmrec.data.preprocess import mmrec_split_sizes, split_interactions

SIZES = [3, 9, 10, 25]


def users_with(sizes, rng):
    user = np.repeat(np.arange(len(sizes)), sizes)
    user = user[rng.permutation(len(user))]  # interleaved, as in a raw log
    return user, rng.integers(0, 1000, len(user))


def counts(user, label, u):
    return [int(((user == u) & (label == c)).sum()) for c in range(3)]


@pytest.mark.parametrize('method', ['random', 'chrono'])
def test_mmrec_proportions(method):
    rng = np.random.default_rng(0)
    user, time = users_with(SIZES, rng)
    label = split_interactions(user, time, method, seed=3)
    # n < 10: 1 test, 1 val; else vt = int(0.2 n), val = vt // 2.
    expected = {3: [1, 1, 1], 9: [7, 1, 1], 10: [8, 1, 1], 25: [20, 2, 3]}
    for u, n in enumerate(SIZES):
        assert counts(user, label, u) == expected[n]


def test_split_sizes_tiny_users():
    val, test = mmrec_split_sizes(np.array([1, 2, 15, 50]))
    assert val.tolist() == [0, 1, 1, 5] and test.tolist() == [1, 1, 2, 5]


def test_chrono_puts_latest_in_test():
    rng = np.random.default_rng(1)
    user, time = users_with(SIZES, rng)
    label = split_interactions(user, time, 'chrono')
    for u in range(len(SIZES)):
        t = time[user == u]
        lab = label[user == u]
        assert t[lab == 2].min() >= t[lab == 1].max() >= t[lab == 0].max()


def test_chrono_ties_in_input_order():
    user = np.zeros(10, dtype=np.int64)
    label = split_interactions(user, np.zeros(10), 'chrono')
    assert label.tolist() == [0] * 8 + [1, 2]


def test_loo():
    user = np.array([0, 0, 0, 0, 1, 1, 2])
    time = np.array([4, 1, 3, 2, 5, 6, 1])
    label = split_interactions(user, time, 'loo')
    # user 0: latest (4) test, second (3) val; users with < 3: all train.
    assert label.tolist() == [2, 0, 1, 0, 0, 0, 0]


def test_random_is_deterministic_and_seeded():
    rng = np.random.default_rng(2)
    user, time = users_with([25] * 20, rng)
    a = split_interactions(user, time, 'random', seed=5)
    assert np.array_equal(a, split_interactions(user, time, 'random', seed=5))
    assert not np.array_equal(a, split_interactions(user, time, 'random',
                                                    seed=6))


def test_unknown_split():
    with pytest.raises(ValueError, match="unknown split 'time'"):
        split_interactions(np.zeros(3, dtype=int), None, 'time')
    with pytest.raises(ValueError, match="'loo' split needs timestamps"):
        split_interactions(np.zeros(3, dtype=int), None, 'loo')
