"""Short training runs on the real TikTok data (image + audio features):
models learn, clearly above popularity, under the honest protocol."""
import pytest

from pyg_mmrec.data import load_dataset
from pyg_mmrec.experiment import run_experiment

pytestmark = pytest.mark.slow


@pytest.fixture
def tiktok(real_dataset):
    return load_dataset(str(real_dataset('tiktok')))


@pytest.fixture
def pop_recall(tiktok):
    res = run_experiment('pop', 'tiktok', data=tiktok, progress=False)
    return res['test']['recall@20']


def test_popularity_is_far_above_random(tiktok, pop_recall):
    # A random ranking of 6,710 items finds a held-out item in the top 20
    # with probability about 20 / 6710 = 0.003.
    assert pop_recall > 0.03


#: Short runs: a larger learning rate than the defaults, capped epochs.
SHORT = {'lr': 5e-3, 'epochs': 20}


@pytest.mark.parametrize('model', ['lightgcn', 'freedom', 'fmcns'])
def test_graph_models_beat_popularity_on_tiktok(tiktok, pop_recall, model):
    res = run_experiment(model, 'tiktok', data=tiktok, progress=False,
                         config=SHORT)
    assert res['selection'] == 'val'
    assert res['test']['recall@20'] > 1.15 * pop_recall, (res['test'], pop_recall)


def test_vbpr_learns_on_tiktok(tiktok):
    # VBPR (matrix factorisation + content) stays below popularity on TikTok
    # (see the README's table), but far above a random ranking (~0.003).
    res = run_experiment('vbpr', 'tiktok', data=tiktok, progress=False,
                         config=SHORT)
    assert res['test']['recall@20'] > 0.02, res['test']
