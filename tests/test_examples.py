"""The PyG-style examples (one per seed model and a baseline) run for one
epoch on the synthetic dataset and report validation and test metrics."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

EXAMPLES = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                    'examples')
MODELS = ['fmcns', 'mdmns', 'rearm', 'genrec', 'mcln', 'dragon']


@pytest.mark.parametrize('name', MODELS)
def test_example_trains_one_epoch(name, tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    out = subprocess.run(
        [sys.executable, osp.join(EXAMPLES, f'{name}.py'), '--epochs', '1'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r'^Epoch: 001, .*Val Recall@20: 0\.\d{4}$', out.stdout,
                     re.M), out.stdout
    test = re.search(r'^Test Recall@20: (0\.\d{4}), NDCG@20: (0\.\d{4})$',
                     out.stdout, re.M)
    assert test and float(test.group(1)) > 0, out.stdout
    assert 'Warning' not in out.stderr, out.stderr[-2000:]
