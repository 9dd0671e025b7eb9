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

    from pyg_mmrec.config import SECTIONS, load_config, resolve_config
    from pyg_mmrec.models import MODELS
    with open(path) as f:
        sections = yaml.safe_load(f)
    assert sections and set(sections) <= set(MODELS)
    for model, config in sections.items():
        assert set(config or {}) <= set(SECTIONS), (model, 'not by section')
        resolve_config(model, load_config(path, model))  # raises if unknown


def test_sections_are_the_keyword_only_arguments_of_their_builders():
    import inspect

    from pyg_mmrec.config import trainer_sections
    from pyg_mmrec.train import Trainer, build_evaluator, build_source
    sections = trainer_sections()
    assert set(sections) == {'trainer', 'loader', 'evaluation'}
    for section, function in (('trainer', Trainer.__init__),
                              ('loader', build_source),
                              ('evaluation', build_evaluator)):
        params = inspect.signature(function).parameters.values()
        assert sections[section] == tuple(
            p.name for p in params if p.kind is p.KEYWORD_ONLY)
    keys = [k for keys in sections.values() for k in keys]
    assert len(keys) == len(set(keys)), 'a key in two sections'
    assert sections['loader'] == ('sampler', 'batch_size', 'num_neighbors',
                                  'negatives', 'num_workers')
    assert {'lr', 'epochs', 'patience', 'clip_grad_norm',
            'lr_decay'} <= set(sections['trainer'])
    assert {'select_on', 'metric', 'protocol'} <= set(sections['evaluation'])
    assert len(inspect.signature(Trainer.__init__).parameters) - 1 <= 15


def test_model_keys_follow_kwargs_up_the_mro():
    from pyg_mmrec.config import model_keys
    fmcns = model_keys('fmcns')
    assert 'flow_weight' in fmcns and 'knn_k' in fmcns  # FREEDOM's
    assert 'kwargs' not in fmcns and 'data' not in fmcns
    assert model_keys('lightgcn') == ('embedding_dim', 'num_layers',
                                      'reg_weight')
    assert model_keys('pop') == ()


def test_sectioned_and_flat_configs_give_the_same_kwargs(tmp_path):
    from pyg_mmrec.config import load_config, resolve_config
    sectioned = tmp_path / 'sectioned.yaml'
    sectioned.write_text(
        'freedom:\n'
        '  model: {knn_k: 5, dropout: 0.3}\n'
        '  trainer: {lr: 0.02, patience: 4}\n'
        '  loader: {batch_size: 128}\n'
        '  evaluation: {ks: [10, 20], eval_batch_size: 64}\n')
    flat = tmp_path / 'flat.yaml'
    flat.write_text('freedom:\n  knn_k: 5\n  dropout: 0.3\n  lr: 0.02\n'
                    '  patience: 4\n  batch_size: 128\n  ks: [10, 20]\n'
                    '  eval_batch_size: 64\n')
    expected = {'model': {'knn_k': 5, 'dropout': 0.3},
                'trainer': {'lr': 0.02, 'patience': 4},
                'loader': {'batch_size': 128},
                'evaluation': {'ks': [10, 20], 'eval_batch_size': 64}}
    for path in (sectioned, flat):
        assert resolve_config('freedom', load_config(str(path),
                                                     'freedom')) == expected


def test_flat_and_dotted_keys_override_the_sections():
    from pyg_mmrec.config import resolve_config
    config = {'model': {'num_layers': 3}, 'trainer': {'lr': 0.1, 'epochs': 7},
              'lr': 0.2, 'model.num_layers': 1, 'trainer.epochs': 2,
              'loader.batch_size': 99, 'evaluation.ks': [5]}
    assert resolve_config('lightgcn', config) == {
        'model': {'num_layers': 1}, 'trainer': {'lr': 0.2, 'epochs': 2},
        'loader': {'batch_size': 99}, 'evaluation': {'ks': [5]}}


def test_every_model_defaults_file_names_a_model_and_valid_settings():
    from pyg_mmrec.config import MODEL_CONFIGS, demo_settings, model_defaults
    from pyg_mmrec.models import MODELS
    files = sorted(p.stem for p in MODEL_CONFIGS.glob('*.yaml'))
    assert files and set(files) <= set(MODELS), files
    for name in MODELS:  # raises on an unknown section, key or type
        model_defaults(name)
        demo_settings(name)
    assert model_defaults('rearm')['trainer'] == {
        'optimizer': 'adamw', 'lr': 5e-5, 'weight_decay': 5e-4}
    assert demo_settings('genrec') == {'trainer': {'epochs': 20}}
    assert model_defaults('lightgcn') == {'model': {}, 'trainer': {},
                                          'loader': {}, 'evaluation': {}}


def test_trainer_defaults_are_filled_in_unless_the_config_sets_them():
    from pyg_mmrec.config import resolve_config
    def runner(model, config):
        sections = resolve_config(model, config)
        return {**sections['trainer'], **sections['loader']}
    assert runner('fmcns', {}) == {'lr': 5e-4, 'batch_size': 512}
    assert runner('fmcns', {'loader': {'batch_size': 64}}) == {
        'batch_size': 64, 'lr': 5e-4}
    assert runner('fmcns', {'trainer.lr': 0.1, 'batch_size': 8}) == {
        'lr': 0.1, 'batch_size': 8}
    assert runner('mdmns', {'epochs': 3}) == {
        'epochs': 3, 'lr': 1e-3, 'batch_size': 1024}
    assert runner('lightgcn', {}) == {}


def test_unknown_keys_and_sections_are_errors_naming_file_model_and_key(
        tmp_path):
    from pyg_mmrec.config import load_config, resolve_config
    path = tmp_path / 'c.yaml'
    path.write_text('lightgcn:\n  model: {num_layers: 2, knn_k: 3}\n')
    with pytest.raises(ValueError, match=r"c\.yaml: model 'lightgcn': unknown "
                       r"model setting 'knn_k'.*allowed in 'model': "
                       r"embedding_dim, num_layers, reg_weight"):
        load_config(str(path), 'lightgcn')
    path.write_text('lightgcn:\n  optim: {lr: 0.1}\n')
    with pytest.raises(ValueError, match=r"c\.yaml: model 'lightgcn': unknown "
                       r"section 'optim'; sections: model, trainer, loader, "
                       r"evaluation"):
        load_config(str(path), 'lightgcn')
    with pytest.raises(ValueError, match=r"model 'vbpr': unknown setting "
                       r"'num_layer'; allowed: model: embedding_dim, "
                       r"reg_weight; trainer: .*lr"):
        resolve_config('vbpr', {'num_layer': 2})
    with pytest.raises(ValueError, match="unknown section 'optim' in "
                       "'optim.lr'"):
        resolve_config('vbpr', {'optim.lr': 2})
    with pytest.raises(ValueError, match="unknown loader setting 'lr'.*'lr' "
                       "is a trainer setting.*allowed in 'loader': sampler, "
                       "batch_size"):
        resolve_config('vbpr', {'loader.lr': 2})
    with pytest.raises(ValueError,
                       match="section 'trainer' must be a mapping"):
        resolve_config('vbpr', {'trainer': 3})


def test_a_key_both_model_and_trainer_setting_is_an_error(monkeypatch):
    from pyg_mmrec.config import resolve_config
    from pyg_mmrec.models import MODELS, LightGCN

    class Clash(LightGCN):
        def __init__(self, data, lr=0.1, **kwargs):
            super().__init__(data, **kwargs)

    Clash.cli_name = 'clash'
    monkeypatch.setitem(MODELS, 'clash', Clash)
    with pytest.raises(ValueError, match="'lr' is both a model argument of "
                       "Clash and a trainer setting.*'model:' or 'trainer:' "
                       "section.*--model.lr / --trainer.lr"):
        resolve_config('clash', {'lr': 0.5})
    sections = resolve_config('clash', {'model': {'lr': 0.5}, 'num_layers': 2,
                                        'trainer.lr': 0.01})
    assert sections['model'] == {'lr': 0.5, 'num_layers': 2}
    assert sections['trainer'] == {'lr': 0.01}


def test_demo_runs_every_registered_model():
    from pyg_mmrec.config import demo_settings
    from pyg_mmrec.demo import FAST, demo_configs
    from pyg_mmrec.models import MODELS
    configs = demo_configs()
    assert list(configs) == list(MODELS)
    assert configs['pop'] == {} and configs['lightgcn'] == FAST
    for name, cls in MODELS.items():
        if not cls.trainable:
            assert configs[name] == {}
            continue
        expected = {s: dict(v) for s, v in FAST.items()}
        for section, settings in demo_settings(name).items():
            expected.setdefault(section, {}).update(settings)
        assert configs[name] == expected
    assert configs['rearm']['trainer']['epochs'] == 10


def test_dataset_configs_are_found_outside_the_checkout(tmp_path,
                                                        monkeypatch):
    # Run from elsewhere (an installed package): the shipped file; a
    # user's own experiments/configs/<dataset>.yaml there comes first.
    from pyg_mmrec.config import find_config
    from pyg_mmrec.config.resolve import DATASET_CONFIGS
    monkeypatch.chdir(tmp_path)
    path, looked = find_config('../data/TikTok', 'dragon')
    assert path == str(DATASET_CONFIGS / 'tiktok.yaml')
    assert looked == ['experiments/configs/tiktok.yaml', path]
    own = tmp_path / 'experiments' / 'configs'
    own.mkdir(parents=True)
    (own / 'tiktok.yaml').write_text('dragon: {model: {user_k: 5}}\n')
    assert find_config('tiktok', 'dragon')[0] == \
        'experiments/configs/tiktok.yaml'
    # a file without the model's section is passed over
    assert find_config('tiktok', 'mgcn')[0] == path
    assert find_config('unknown', 'mgcn')[0] is None
