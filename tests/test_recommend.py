import csv
import io
import json
import os
import shutil

import pytest
import torch

from pyg_mmrec.cli import main
from pyg_mmrec.data import load_dataset
from pyg_mmrec.data.hetero import num_items, num_users
from pyg_mmrec.experiment import run_experiment
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.models import get_model
from pyg_mmrec.recommend import (
    format_recommendations,
    load_run_model,
    read_id_mapping,
    recommend,
    top_k,
    write_recommendations,
)
from pyg_mmrec.testing import with_package


@pytest.fixture(scope='module')
def data():
    return load_dataset('synthetic')


@pytest.fixture(scope='module')
def run(data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('run') / 'lightgcn')
    run_experiment('lightgcn', 'synthetic', seed=1, output_dir=out,
                   config={'epochs': 2, 'embedding_dim': 16, 'num_layers': 2},
                   progress=False, data=data)
    return out


def reference_model(run_dir, data, file='best.pt'):
    model = get_model('lightgcn')(data, embedding_dim=16, num_layers=2)
    state = torch.load(os.path.join(run_dir, file), weights_only=True)
    model.load_state_dict(state if file == 'best.pt' else state['model'])
    return model.eval()


@pytest.mark.parametrize('exclude_seen', [True, False])
@pytest.mark.parametrize('batch_size', [7, 4096])
def test_top_k_is_topk_of_the_masked_scores(run, data, exclude_seen,
                                            batch_size):
    users = torch.tensor([0, 3, 17, 3, num_users(data) - 1])
    recs = recommend(run, users.tolist(), k=10,
                     exclude="train" if exclude_seen else "none",
                     batch_size=batch_size, data=data)
    model = reference_model(run, data)
    with torch.no_grad():
        scores = model.score(users)
    if exclude_seen:
        seen = train_graph(data).contains(users.view(-1, 1),
                                          torch.arange(num_items(data)))
        scores[seen] = float('-inf')
    values, items = torch.topk(scores, 10, dim=1)
    assert torch.equal(recs.users, users)
    assert torch.equal(recs.items, items)
    assert torch.allclose(recs.scores, values)


def test_exclude_seen_never_recommends_a_training_item(run, data):
    recs = recommend(run, k=25, data=data)  # every user
    assert recs.items.shape == (num_users(data), 25)
    users = recs.users.view(-1, 1).expand_as(recs.items)
    assert not train_graph(data).contains(users, recs.items).any()
    unmasked = recommend(run, users=range(50), k=25, exclude="none",
                         data=data)
    assert train_graph(data).contains(
        unmasked.users.view(-1, 1).expand_as(unmasked.items),
        unmasked.items).any()


def test_the_model_is_rebuilt_in_eval_mode_from_best_or_last(run, data,
                                                             tmp_path,
                                                             caplog):
    model, _, config = load_run_model(run, data=data)
    assert not model.training and config['name'] == 'lightgcn'
    assert config['model'] == {'embedding_dim': 16, 'num_layers': 2,
                               'reg_weight': 1e-4}
    ref = reference_model(run, data)
    for key, value in ref.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    only_last = tmp_path / 'run'
    shutil.copytree(run, only_last)
    os.remove(only_last / 'best.pt')
    with caplog.at_level('WARNING', logger='pyg_mmrec'):
        model, _, _ = load_run_model(str(only_last), data=data)
    assert 'no best.pt; using the weights of the last epoch' in caplog.text
    ref = reference_model(run, data, 'last.pt')
    for key, value in ref.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_clear_errors(run, data, tmp_path):
    with pytest.raises(FileNotFoundError, match='no results.json'):
        recommend(str(tmp_path), data=data)
    with pytest.raises(ValueError, match=r'unknown user ids \[-1, 100000\]'):
        recommend(run, users=[0, 100000, -1], data=data)
    with pytest.raises(ValueError, match='k must be between 1 and the number '
                       'of items'):
        recommend(run, users=[0], k=num_items(data) + 1, data=data)
    empty = tmp_path / 'no-weights'
    empty.mkdir()
    shutil.copy(os.path.join(run, 'results.json'), empty)
    with pytest.raises(FileNotFoundError, match='no best.pt or last.pt'):
        recommend(str(empty), data=data)


def test_k_is_padded_when_a_user_has_fewer_candidates(run, data):
    model, _, _ = load_run_model(run, data=data)
    index = train_graph(data)
    user = int(index.user_degree().argmax())
    k = num_items(data) - index.user_degree()[user].item() + 1
    items, scores = top_k(model, torch.tensor([user]), int(k), index)
    assert items[0, -1] == -1 and scores[0, -1] == float('-inf')
    assert (items[0, :-1] >= 0).all()


def test_original_ids_from_the_id_maps(run, data, tmp_path):
    folder = tmp_path / 'synth'
    folder.mkdir()
    with open(folder / 'u_id_mapping.csv', 'w') as f:
        f.write('user_id\tuserID\n')
        f.writelines(f'U{u:04d}\t{u}\n' for u in range(num_users(data)))
    with open(folder / 'i_id_mapping.csv', 'w') as f:
        f.write('asin\titemID\n')
        f.writelines(f'B{i:05d}\t{i}\n' for i in range(num_items(data)))
    recs = recommend(run, users=[3, 17], k=5, data=data,
                     dataset=str(folder))
    records = recs.records()
    assert len(records) == 10
    assert [r['raw_user'] for r in records[::5]] == ['U0003', 'U0017']
    assert all(r['raw_item'] == f"B{r['item']:05d}" for r in records)
    rows = list(csv.DictReader(io.StringIO(format_recommendations(recs))))
    assert list(rows[0]) == ['user', 'rank', 'item', 'score', 'raw_user',
                             'raw_item']
    assert [int(r['rank']) for r in rows[:5]] == [1, 2, 3, 4, 5]
    path = tmp_path / 'recs.json'
    write_recommendations(recs, path)
    assert json.loads(path.read_text()) == records
    # No maps: no raw columns.
    plain = recommend(run, users=[3], k=2, data=data)
    assert list(plain.records()[0]) == ['user', 'rank', 'item', 'score']


def test_read_id_mapping_tolerates_headers_and_rejects_bad_lines(tmp_path):
    path = tmp_path / 'm.csv'
    path.write_text('raw\tnew\na\t1\nb\t0\n')
    assert read_id_mapping(str(path)) == {1: 'a', 0: 'b'}
    path.write_text('a\t1\nb\t0\n')  # no header
    assert read_id_mapping(str(path)) == {1: 'a', 0: 'b'}
    path.write_text('a\t1\nb\t1\n')
    with pytest.raises(ValueError, match='id 1 appears twice'):
        read_id_mapping(str(path))
    path.write_text('a\t1\nb\tx\n')
    with pytest.raises(ValueError, match=r"m\.csv:2: the id 'x' is not"):
        read_id_mapping(str(path))


def test_recommend_cli(run, tmp_path, capsys):
    out = tmp_path / 'recs.csv'
    assert main(['recommend', '--run', run, '--users', '3,17', '--k', '4',
                 '--output', str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [(int(r['user']), int(r['rank'])) for r in rows] == [
        (u, r) for u in (3, 17) for r in range(1, 5)]
    assert 'top-4' in capsys.readouterr().out
    assert main(['recommend', '--run', run, '--all-users', '--k', '1']) == 0
    text = capsys.readouterr().out
    assert text.startswith('user,rank,item,score\n')
    assert main(['recommend', '--run', run, '--users', '3,x']) == 2
    assert 'error: --users expects' in capsys.readouterr().err
    assert main(['recommend', '--run', run, '--users', '99999']) == 2
    assert 'error: unknown user ids [99999]' in capsys.readouterr().err
    assert main(['recommend', '--run', str(tmp_path), '--users', '1']) == 2
    assert 'no results.json' in capsys.readouterr().err


def write_movielens(folder, users=30, items=24, per_user=10, seed=0):
    r"""A MovieLens-100k-format log (``u.data``) and its item file
    (``u.item``: id|title|date|video date|url|genre flags)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    folder.mkdir()
    (folder / 'u.data').write_text(''.join(
        f'{u}\t{i}\t{rng.integers(1, 6)}\t{rng.integers(10**8)}\n'
        for u in range(1, users + 1)
        for i in rng.choice(items, per_user, replace=False) + 1))
    (folder / 'u.item').write_bytes(''.join(
        f'{i}|Movie {i} (1995)|01-Jan-1995||http://x/{i}|0|1|0\n'
        for i in range(1, items + 1)).encode('latin-1'))


def test_a_movielens_log_to_titled_recommendations_by_original_ids(
        tmp_path, capsys, monkeypatch):
    from pyg_mmrec.graphs import interaction_graph
    monkeypatch.setenv('PYG_MMREC_CACHE', str(tmp_path / 'cache'))
    write_movielens(tmp_path / 'raw')
    root, run_dir = tmp_path / 'data', str(tmp_path / 'run')
    assert main(['preprocess', '--format', 'movielens', '--input',
                 str(tmp_path / 'raw'), '--output', str(root / 'ml'),
                 '--user-core', '1', '--item-core', '1',
                 '--no-progress']) == 0
    assert (root / 'ml' / 'item_meta.csv').is_file()  # from u.item
    assert main(['train', '--model', 'lightgcn', '--dataset', 'ml',
                 '--data-root', str(root), '--epochs', '2', '--config',
                 'none', '--output-dir', run_dir, '--no-progress']) == 0
    capsys.readouterr()
    args = ['recommend', '--run', run_dir, '--data-root', str(root),
            '--k', '5']
    assert main(args + ['--raw-users', '7,3', '--exclude', 'known']) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r['raw_user'] for r in rows[::5]] == ['7', '3'] and \
        len(rows) == 10
    # the title and the genres set in u.item (the second flag: Action)
    assert all(r['title'] == f"Movie {r['raw_item']} (1995) Action"
               for r in rows)
    data = load_dataset('ml', root=str(root))
    known = interaction_graph(data)  # every split: none recommended
    assert not known.contains(
        torch.tensor([int(r['user']) for r in rows]),
        torch.tensor([int(r['item']) for r in rows])).any()
    # "train" masks the training items only: a validation or test item of
    # these users may come back, and here one does.
    wide = recommend(run_dir, k=num_items(data) // 2, data_root=str(root),
                     exclude='train')
    users = wide.users.view(-1, 1).expand_as(wide.items)
    assert not train_graph(data).contains(users, wide.items).any()
    assert known.contains(users, wide.items).any()
    # unknown original ids: a clear error, exit 2
    assert main(args + ['--raw-users', '7,nobody']) == 2
    assert "unknown original user ids ['nobody']" in capsys.readouterr().err
    # every user streamed to a file in batches: the same rows
    out = tmp_path / 'all.csv'
    assert main(args + ['--all-users', '--batch-size', '7', '--output',
                        str(out)]) == 0
    assert f"{num_users(data)} users x top-5" in capsys.readouterr().out
    # (scores as one call with the same batches: a product's last digits
    # depend on its shape)
    every = recommend(run_dir, k=5, data_root=str(root), batch_size=7)
    expected = format_recommendations(every)
    assert out.read_text() == expected
    assert not os.path.exists(f'{out}.tmp')
    out = tmp_path / 'all.json'
    assert main(args + ['--all-users', '--batch-size', '7', '--output',
                        str(out)]) == 0
    assert json.loads(out.read_text()) == json.loads(
        format_recommendations(every, 'json'))


def test_raw_users_need_the_id_map(run, data):
    with pytest.raises(ValueError, match=r"--raw-users needs the dataset's "
                       r"user id map \(u_id_mapping.csv"):
        recommend(run, raw_users=['U0003'], data=data)
    with pytest.raises(ValueError, match="exclude must be one of"):
        recommend(run, users=[0], exclude='seen', data=data)


@with_package('faiss')
def test_the_inner_product_index_is_exact_when_it_scans_every_list(run,
                                                                    data):
    from pyg_mmrec.recommend import inner_product_top_k
    model, _, _ = load_run_model(run, data=data)
    users = torch.arange(0, num_users(data), 7)
    pairs = train_graph(data)
    exact_items, exact_scores = top_k(model, users, 10, pairs)
    items, scores = inner_product_top_k(model, users, 10, pairs, nlist=8,
                                        nprobe=8)
    torch.testing.assert_close(scores, exact_scores, rtol=1e-5, atol=1e-5)
    assert (items == exact_items).float().mean() > 0.99  # ties may swap
    assert not pairs.contains(users.view(-1, 1).expand_as(items),
                              items).any()
    # scanning 1 of 8 lists finds part of the exact top-k only
    few, _ = inner_product_top_k(model, users, 10, pairs, nlist=8, nprobe=1)
    found = (few[:, :, None] == exact_items[:, None]).any(-1).float().mean()
    assert 0.2 < found < 1.0
    recs = recommend(run, users=users.tolist(), k=10, data=data,
                     index='ivf', nprobe=10**6)  # clamped to every list
    torch.testing.assert_close(recs.scores, exact_scores, rtol=1e-5,
                               atol=1e-5)


@with_package('faiss')
def test_the_index_refuses_scores_that_are_not_inner_products(data):
    from pyg_mmrec.recommend import inner_product_top_k
    pop = get_model('pop')(data)
    with pytest.raises(ValueError, match='not inner products'):
        inner_product_top_k(pop, torch.tensor([0]), 5)
