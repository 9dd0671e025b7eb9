import json

from pyg_mmrec.train.records import format_record, write_json


def test_log_line_separates_the_stages_from_the_recommender_loss():
    record = {'epoch': 3, 'train_time': 1.25, 'best': True,
              'losses': {'bpr': 0.2, 'cl': 0.1, 'loss': 0.3,
                         'diffusion/image': 850.4, 'diffusion/text': 894.2},
              'val': {'recall@20': 0.25, 'ndcg@20': 0.125}, 'eval_time': 0.5}
    assert format_record(record, 'recall@20') == (
        'epoch    3 | loss 0.3000 (bpr 0.2000 cl 0.1000) | diffusion '
        '(image 850.4000 text 894.2000) | train 1.25s | val recall@20 0.2500 '
        'ndcg@20 0.1250 | eval 0.50s | *')


def test_write_json_is_atomic_and_creates_the_folder(tmp_path):
    path = tmp_path / 'a' / 'results.json'
    write_json({'x': 1}, str(path))
    assert json.loads(path.read_text()) == {'x': 1}
    assert not (tmp_path / 'a' / 'results.json.tmp').exists()
