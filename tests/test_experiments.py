import importlib.util
import os

import pytest

ROOT = os.path.join(os.path.dirname(__file__), '..')


def load_script(name):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(ROOT, 'experiments', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(epoch, val, test):
    return {'epoch': epoch, 'val': {'recall@20': val},
            'test': {'recall@20': test}}


def test_protocols_replay_early_stopping_and_pick_the_best_test_epoch():
    select = load_script('protocols').select
    history = [record(1, 0.10, 0.11), record(2, 0.12, 0.10),
               record(3, 0.11, 0.13), record(4, 0.11, 0.12),
               # after two evaluations without improvement, patience 2 stops:
               record(5, 0.20, 0.30)]
    honest, paper, epochs = select(history, patience=2)
    assert (honest['epoch'], paper['epoch'], epochs) == (2, 5, 5)
    honest, _, _ = select(history, patience=3)
    assert honest['epoch'] == 5
    honest, paper, epochs = select(history, patience=3, max_epochs=4)
    assert (honest['epoch'], paper['epoch'], epochs) == (2, 3, 4)
    with pytest.raises(ValueError, match='no epoch'):
        select([{'epoch': 1, 'losses': {}}], patience=2)


@pytest.mark.parametrize('path', sorted(
    os.path.join(ROOT, 'experiments', 'configs', f)
    for f in os.listdir(os.path.join(ROOT, 'experiments', 'configs'))))
def test_every_config_section_names_a_model_and_valid_settings(path):
    import yaml

    from pyg_mmrec.experiment import load_config, split_config
    from pyg_mmrec.models import MODELS
    with open(path) as f:
        sections = yaml.safe_load(f)
    assert sections and set(sections) <= set(MODELS)
    for model in sections:
        split_config(model, load_config(path, model))  # raises if unknown
