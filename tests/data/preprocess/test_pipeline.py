import gzip
import json
import os

import numpy as np
import pytest

from pyg_mmrec.data import DataFormatError, load_dataset, split_edge_index
from pyg_mmrec.data.preprocess import preprocess, read_id_mapping
from pyg_mmrec.models import MODELS
from pyg_mmrec.testing import has_package


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv('PYG_MMREC_CACHE', str(tmp_path / 'cache'))


def read_id_map(path):
    ids = read_id_mapping(str(path))
    assert sorted(ids) == list(range(len(ids)))  # contiguous new ids
    return [ids[i] for i in range(len(ids))]


def write_reviews(path, users=40, items=25, per_user=12, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    with gzip.open(path, 'wt') as f:
        for u in range(users):
            for i in rng.choice(items, per_user, replace=False):
                r, t = int(rng.integers(1, 6)), int(rng.integers(0, 10**6))
                r = r if rows else 5  # the duplicated pair survives
                rows.append((f'U{u:03d}', f'I{i:03d}', r, t))
                f.write(json.dumps({'reviewerID': f'U{u:03d}',
                                    'asin': f'I{i:03d}', 'overall': float(r),
                                    'unixReviewTime': t}) + '\n')
        # a duplicate pair, later in time: collapsed to the earliest
        u, i, r, t = rows[0]
        f.write(json.dumps({'reviewerID': u, 'asin': i, 'overall': 5.0,
                            'unixReviewTime': t + 1}) + '\n')
    return rows


def read_inter(path):
    with open(path) as f:
        header = f.readline().rstrip('\n').split('\t')
        table = np.array([line.split('\t') for line in f], dtype=float)
    return header, table


def test_amazon_to_mmrec_layout_loads_and_trains(tmp_path):
    raw = tmp_path / 'reviews.json.gz'
    rows = write_reviews(raw)
    out = tmp_path / 'toy'
    stats = preprocess('amazon', str(raw), str(out), min_rating=2)
    assert sorted(os.listdir(out)) == ['i_id_mapping.csv', 'stats.json',
                                       'toy.inter', 'u_id_mapping.csv']
    header, table = read_inter(out / 'toy.inter')
    assert header == ['userID', 'itemID', 'rating', 'timestamp', 'x_label']
    assert (table[:, 2] >= 2).all()
    assert stats == json.load(open(out / 'stats.json'))
    assert stats['raw_lines'] == len(rows) + 1
    assert stats['kept_after_threshold'] == sum(r >= 2 for *_, r, _ in rows) \
        + 1
    assert stats['duplicates_removed'] == 1
    assert stats['train'] + stats['val'] + stats['test'] == \
        stats['interactions'] == len(table)

    data = load_dataset(str(out))
    assert data['user'].num_nodes == stats['users']
    assert data['item'].num_nodes == stats['items']
    assert split_edge_index(data, 'test').size(1) == stats['test']

    from pyg_mmrec.experiment import run_experiment
    res = run_experiment('lightgcn', str(out), progress=False, config={
        'epochs': 1, 'batch_size': 64}, output_dir=str(tmp_path / 'run'))
    assert np.isfinite(res['test']['recall@20'])


def test_id_maps_round_trip(tmp_path):
    raw = tmp_path / 'reviews.json.gz'
    rows = write_reviews(raw)
    out = tmp_path / 'd'
    preprocess('amazon', str(raw), str(out), user_core=3, item_core=3)
    users = read_id_map(out / 'u_id_mapping.csv')
    items = read_id_map(out / 'i_id_mapping.csv')
    assert open(out / 'u_id_mapping.csv').readline() == 'raw_id\tuserID\n'
    assert open(out / 'i_id_mapping.csv').readline() == 'raw_id\titemID\n'
    _, table = read_inter(out / 'd.inter')
    raw_pairs = {(u, i): t for u, i, _, t in reversed(rows)}
    for u, i, _, t, _ in table.astype(np.int64):
        assert raw_pairs[(users[u], items[i])] == t  # the earliest time
    # new ids are by first appearance in the filtered log
    first_users = list(dict.fromkeys(u for u, *_ in rows if u in users))
    assert users == first_users
    u_new = {raw_id: k for k, raw_id in enumerate(users)}
    assert [users[u_new[r]] for r in users] == users


@pytest.mark.parametrize('split', ['random', 'chrono', 'loo'])
def test_deterministic_for_seed(tmp_path, split):
    raw = tmp_path / 'reviews.json.gz'
    write_reviews(raw)
    for name, seed in (('a', 1), ('b', 1), ('c', 2)):
        preprocess('amazon', str(raw), str(tmp_path / name), split=split,
                   seed=seed)
    a, b, c = (open(tmp_path / n / f'{n}.inter').read() for n in 'abc')
    assert a == b
    assert (a != c) == (split == 'random')


def test_empty_after_k_core(tmp_path):
    raw = tmp_path / 'reviews.json.gz'
    write_reviews(raw, users=3, per_user=3)
    with pytest.raises(DataFormatError, match=r"reviews\.json\.gz: no "
                       r"interactions left after 5-core"):
        preprocess('amazon', str(raw), str(tmp_path / 'x'))
    with pytest.raises(DataFormatError, match=r"no interactions with rating "
                       r">= 9"):
        preprocess('amazon', str(raw), str(tmp_path / 'x'), min_rating=9)


def test_movielens_and_csv(tmp_path):
    rng = np.random.default_rng(0)
    lines = [f'{u}\t{i}\t{rng.integers(1, 6)}\t{rng.integers(10**8)}'
             for u in range(1, 21) for i in rng.choice(30, 10, replace=False)
             + 1]
    (tmp_path / 'u.data').write_text('\n'.join(lines) + '\n')
    stats = preprocess('movielens', str(tmp_path / 'u.data'),
                       str(tmp_path / 'ml'), user_core=1, item_core=1,
                       split='loo')
    assert stats['interactions'] == 200 and stats['test'] == 20
    csv = tmp_path / 'log.csv'
    csv.write_text('u;i\n' + '\n'.join(
        ';'.join(line.split('\t')[:2]) for line in lines) + '\n')
    stats = preprocess('csv', str(csv), str(tmp_path / 'c'), user_col='u',
                       item_col='i', delimiter=';', split='random')
    assert stats['raw_lines'] == 200 and stats['kept_after_k_core'] > 0
    assert load_dataset(str(tmp_path / 'c'))['user'].num_nodes == \
        stats['users']


def test_cli(tmp_path, capsys):
    from pyg_mmrec.cli import main
    raw = tmp_path / 'reviews.json.gz'
    write_reviews(raw)
    assert main(['preprocess', '--format', 'amazon', '--input', str(raw),
                 '--output', str(tmp_path / 'out'), '--name', 'baby',
                 '--split', 'chrono', '--no-progress']) == 0
    out = capsys.readouterr().out
    assert 'users' in out and 'k-core' in out
    assert (tmp_path / 'out' / 'baby.inter').is_file()
    assert main(['preprocess', '--format', 'amazon', '--input',
                 str(tmp_path / 'nope.json'), '--output',
                 str(tmp_path / 'o')]) == 2
    assert 'error: ' in capsys.readouterr().err
    bad = tmp_path / 'bad.json'
    bad.write_text('{"reviewerID": "A", "asin": "B", "overall": 1, '
                   '"unixReviewTime": 1}\n{oops\n')
    assert main(['preprocess', '--format', 'amazon', '--input', str(bad),
                 '--output', str(tmp_path / 'o')]) == 2
    assert 'bad.json:2: malformed JSON line' in capsys.readouterr().err


@pytest.fixture(scope='module')
def amazon_with_features(tmp_path_factory):
    r"""A preprocessed Amazon dataset with MiniLM text features (extra
    'text') and image features from an Amazon ``.b`` file, made by the CLI
    (items I000 has no image row: the mean)."""
    if not has_package('sentence_transformers'):
        pytest.skip("extra 'text' not installed: pip install -e '.[text]'")
    from test_features import write_amazon_binary

    from pyg_mmrec.cli import main
    tmp = tmp_path_factory.mktemp('amazon')
    write_reviews(tmp / 'reviews.json.gz')
    (tmp / 'meta.json').write_text(''.join(json.dumps(
        {'asin': f'I{i:03d}', 'title': f'toy number {i}', 'brand': 'ACME'})
        + '\n' for i in range(25)))
    rng = np.random.default_rng(1)
    write_amazon_binary(tmp / 'image_features_Toy.b', [
        (f'I{i:03d}', rng.normal(size=4096)) for i in range(1, 25)])
    out = tmp / 'toy'
    assert main(['preprocess', '--format', 'amazon', '--input',
                 str(tmp / 'reviews.json.gz'), '--meta',
                 str(tmp / 'meta.json'), '--output', str(out),
                 '--text-features', '--item-features',
                 f'image={tmp / "image_features_Toy.b"}',
                 '--no-progress']) == 0
    return out


def test_precomputed_item_features(amazon_with_features):
    stats = json.load(open(amazon_with_features / 'stats.json'))
    assert stats['features']['text']['dim'] == 384
    assert stats['features']['image']['dim'] == 4096
    items = read_id_map(amazon_with_features / 'i_id_mapping.csv')
    image = np.load(amazon_with_features / 'image_feat.npy')
    rng = np.random.default_rng(1)
    rows = {f'I{i:03d}': rng.normal(size=4096).astype(np.float32)
            for i in range(1, 25)}
    for new, raw in enumerate(items):
        expected = rows.get(raw, np.mean([rows[r] for r in items
                                          if r in rows], axis=0))
        assert np.allclose(image[new], expected, atol=1e-6)


def test_item_features_errors(tmp_path):
    raw = tmp_path / 'reviews.json.gz'
    write_reviews(raw)
    with pytest.raises(FileNotFoundError, match=r"no such feature file "
                       r"\(item features 'audio'\)"):
        preprocess('amazon', str(raw), str(tmp_path / 'x'),
                   item_features={'audio': str(tmp_path / 'nope.npy')})
    with pytest.raises(ValueError, match=r"\['text'\] would overwrite"):
        preprocess('amazon', str(raw), str(tmp_path / 'x'), text=True,
                   item_features={'text': str(raw)})
    from pyg_mmrec.cli import main
    assert main(['preprocess', '--format', 'amazon', '--input', str(raw),
                 '--output', str(tmp_path / 'o'), '--item-features',
                 'image']) == 2


@pytest.mark.parametrize('name', list(MODELS))
def test_preprocessed_output_trains_with_every_model(amazon_with_features,
                                                     tmp_path, name):
    from pyg_mmrec.experiment import run_experiment
    data = load_dataset(str(amazon_with_features))
    assert data['item'].x_text.shape[1] == 384
    assert data['item'].x_image.shape[1] == 4096
    res = run_experiment(name, str(amazon_with_features), progress=False,
                         config={'epochs': 1, 'batch_size': 64},
                         output_dir=str(tmp_path / 'run'), data=data)
    assert len(res['history']) == 1
    assert all(np.isfinite(v) for v in res['test'].values())


# Atomic output ###############################################################

def test_failure_reading_features_leaves_no_output(tmp_path):
    raw = tmp_path / 'reviews.json.gz'
    write_reviews(raw)
    bad = tmp_path / 'feat.txt'
    bad.write_text('I000 1 2\nI001 1 x\n')
    with pytest.raises(DataFormatError, match=r'feat\.txt:2: non-numeric'):
        preprocess('amazon', str(raw), str(tmp_path / 'out'),
                   item_features={'image': str(bad)})
    assert not (tmp_path / 'out').exists()
    assert sorted(os.listdir(tmp_path)) == ['feat.txt', 'reviews.json.gz']


def test_failure_keeps_the_previous_dataset(tmp_path):
    raw = tmp_path / 'reviews.json.gz'
    write_reviews(raw)
    out = tmp_path / 'out'
    preprocess('amazon', str(raw), str(out), split='chrono')
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    bad = tmp_path / 'feat.txt'
    bad.write_text('I000 1 2\nI001 1\n')
    with pytest.raises(DataFormatError, match=r'feat\.txt:2: 1 values'):
        preprocess('amazon', str(raw), str(out), split='random',
                   item_features={'image': str(bad)})
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before
    assert not [e for e in os.listdir(tmp_path) if e.startswith('.')]
    # A successful run replaces it as a whole.
    (out / 'image_feat.npy').write_bytes(b'stale')
    preprocess('amazon', str(raw), str(out), split='random')
    assert sorted(os.listdir(out)) == sorted(before)
    assert (out / 'out.inter').read_bytes() != before['out.inter']
    assert not [e for e in os.listdir(tmp_path) if e.startswith('.')]


def test_output_checked_before_reading_input(tmp_path):
    (tmp_path / 'out').write_text('a file')
    absent = str(tmp_path / 'absent.json')  # would fail if read first
    with pytest.raises(ValueError, match=r'out: exists and is not a folder'):
        preprocess('amazon', absent, str(tmp_path / 'out'))
    (tmp_path / 'folder').mkdir()
    (tmp_path / 'folder' / 'thesis.tex').write_text('precious')
    with pytest.raises(ValueError, match=r'holds 1 entry that '
                       r'preprocessing does not write \(thesis\.tex\)'):
        preprocess('amazon', absent, str(tmp_path / 'folder'))
    assert (tmp_path / 'folder' / 'thesis.tex').read_text() == 'precious'


def test_input_inside_output_refused(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    write_reviews(out / 'reviews.json.gz')
    (out / 'data.inter').write_text('')  # looks like an output
    os.rename(out / 'reviews.json.gz', out / 'x_feat.npy')
    with pytest.raises(ValueError, match=r'holds the input .*x_feat\.npy'):
        preprocess('amazon', str(out / 'x_feat.npy'), str(out))
    assert sorted(os.listdir(out)) == ['data.inter', 'x_feat.npy']


@pytest.mark.parametrize('name', ['../escape', 'a/b', '..', ''])
def test_name_must_be_a_file_name(tmp_path, name):
    raw = tmp_path / 'reviews.json.gz'
    write_reviews(raw)
    with pytest.raises(ValueError, match='must be a file name'):
        preprocess('amazon', str(raw), str(tmp_path / 'out'), name=name)
    assert sorted(os.listdir(tmp_path)) == ['reviews.json.gz']
