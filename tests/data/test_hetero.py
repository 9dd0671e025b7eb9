"""The shared rules of :func:`~pyg_mmrec.data.build_hetero_data`, through
both readers where they read files: contiguous ids, feature shapes and cold
users."""
import numpy as np
import pytest
from readers_helpers import (
    ROWS,
    expected_pairs,
    split_pairs,
    write_diffmm,
    write_mmrec,
)

from pyg_mmrec.data import (
    DataFormatError,
    build_hetero_data,
    num_items,
    num_users,
    read_folder,
    read_mmrec,
)


def test_id_gaps_within_slack_accepted():
    # 1,000 users used of 2,000 ids: 1,000 unused <= max(used, ID_SLACK).
    user = np.repeat(np.arange(0, 2000, 2), 3)
    item = np.tile([0, 1, 2], 1000)
    split = np.tile([0, 1, 2], 1000)
    data = build_hetero_data(user, item, split, 2000, 3)
    assert num_users(data) == 2000
    with pytest.raises(DataFormatError, match=r'user ids span 0\.\.2099 '
                       r'\(2,100 ids\) but only 1,000 distinct'):
        build_hetero_data(user, item, split, 2100, 3)


def test_item_id_space_of_feature_table_accepted():
    # 2,000 feature rows, 3 items with interactions: the rows define items.
    feats = {'image': np.zeros((2000, 2), np.float32)}
    data = build_hetero_data([0, 0, 0], [0, 1, 2], [0, 1, 2], 1, 2000, feats)
    assert num_items(data) == 2000
    with pytest.raises(DataFormatError, match='item ids span 0..1999'):
        build_hetero_data([0, 0, 0], [0, 1, 2], [0, 1, 2], 1, 2000)


@pytest.mark.parametrize('shape', [(5, 0), (0, ), (5, ), ()])
def test_features_without_dimensions(tmp_path, shape):
    folder = write_mmrec(tmp_path, features={'image': np.zeros(shape)})
    with pytest.raises(DataFormatError, match=r'2-d .* dim >= 1') as e:
        read_mmrec(folder)
    assert str(e.value).startswith(str(tmp_path / 'image_feat.npy'))
    with pytest.raises(DataFormatError, match=r'^x: expected a 2-d'):
        build_hetero_data([0, 0, 1], [0, 1, 1], [0, 1, 2], 2, 5,
                          {'image': np.zeros(shape)},
                          sources={'image': 'x'})


# user 3: validation and test interactions, no training one (cold).
COLD_ROWS = ROWS + [(3, 0, 1), (3, 1, 2), (3, 2, 2)]


@pytest.mark.parametrize('layout', ['mmrec', 'diffmm'])
def test_cold_users_held_out_dropped(tmp_path, caplog, layout):
    if layout == 'mmrec':
        folder = write_mmrec(tmp_path / 'toy', rows=COLD_ROWS)
    else:
        folder = write_diffmm(tmp_path / 'toy', rows=COLD_ROWS, shape=(4, 5))
    with caplog.at_level('WARNING', logger='pyg_mmrec.data'):
        data = read_folder(folder)
    assert num_users(data) == 4  # the cold user stays a node
    for code, split in enumerate(('train', 'val', 'test')):
        assert split_pairs(data, split) == expected_pairs(ROWS, code)
    assert (data.dropped_cold_users, data.dropped_cold_interactions) == \
        (1, 3)
    assert 'dropping 3 validation/test interaction(s) (1 validation, 2 ' \
        'test) of 1 user(s) without any training interaction' in caplog.text
    assert 'not evaluated' in caplog.text


def test_cold_items_kept():
    # Item 2 only appears in validation/test: a candidate like any other.
    data = build_hetero_data([0, 0, 1, 1], [0, 2, 1, 2], [0, 1, 0, 2], 2, 3)
    assert split_pairs(data, 'val') == [(0, 2)]
    assert split_pairs(data, 'test') == [(1, 2)]
    assert data.dropped_cold_interactions == 0


def test_split_empty_after_dropping_cold_users():
    with pytest.raises(DataFormatError, match='the test split is empty '
                       'after dropping the held-out interactions of users '
                       'without training interactions'):
        build_hetero_data([0, 0, 1], [0, 1, 1], [0, 1, 2], 2, 2,
                          sources={'interactions': 'x.inter'})
