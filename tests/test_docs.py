"""The documentation's runnable examples (docs/quickstart.rst and
docs/own_model.rst include them): a quickstart from data to recommendations
and a new model on the Recommender contract, each run for a few epochs on
the synthetic dataset."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from pyg_mmrec.data import make_synthetic

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
EXAMPLES = osp.join(ROOT, 'examples')


def run_example(name, tmp_path, *args):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    out = subprocess.run(
        [sys.executable, osp.join(EXAMPLES, name), *args], cwd=tmp_path,
        env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'Warning' not in out.stderr, out.stderr[-2000:]
    return out.stdout


def test_quickstart_trains_and_recommends(tmp_path):
    stdout = run_example('quickstart.py', tmp_path, '--epochs', '2')
    assert re.search(r'^best epoch [12] of 2; test at that epoch '
                     r'\(full ranking\):$', stdout, re.M), stdout
    recall = re.search(r'^ +recall@20 (0\.\d{4})$', stdout, re.M)
    assert recall and float(recall.group(1)) > 0, stdout
    # Top-10 of three users: ten distinct items, none a training item.
    recs = re.findall(r'^user (\d): \[([\d, ]+)\]$', stdout, re.M)
    assert [user for user, _ in recs] == ['0', '1', '2'], stdout
    data = make_synthetic(num_users=1000, num_items=800, seed=0)
    user, item = data['user', 'interacts', 'item'].edge_index[
        :, data['user', 'interacts', 'item'].train_mask]
    for u, items in recs:
        items = {int(i) for i in items.split(',')}
        seen = set(item[user == int(u)].tolist())
        assert len(items) == 10 and not items & seen, (u, items & seen)
    # The run's folder: the selected epoch's weights and the results.
    run = tmp_path / 'runs' / 'quickstart'
    assert (run / 'best.pt').is_file() and (run / 'results.json').is_file()


@pytest.mark.parametrize('sampler', ['full', 'neighbor'])
def test_own_model_example_trains(tmp_path, sampler):
    stdout = run_example('own_model.py', tmp_path, '--epochs', '2',
                         '--sampler', sampler)
    assert stdout.startswith('FeatGCN(num_users=1000, num_items=800, '
                             'embedding_dim=32, num_layers=2)'), stdout
    test = re.search(r'^best epoch [12]: test recall@20 (0\.\d{4}) '
                     r'ndcg@20 (0\.\d{4})$', stdout, re.M)
    assert test and float(test.group(1)) > 0, stdout
