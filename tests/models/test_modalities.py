"""Every registered model on datasets with 0, 1, 2 and 3 item modalities:
it trains (finite tensor loss terms, finite metrics and scores) or its
constructor refuses the dataset with a clear :class:`ValueError` naming the
model and what the dataset has.

Which (model, modality count) pairs refuse is the explicit table
:data:`REFUSES`; every other pair must train. A model that starts refusing a
case, or starts accepting one it refused, fails here. A newly registered
model is covered without editing this file (its default settings are used
unless :data:`SMALL` has some); if it needs item features, add its
``(name, 0)`` refusal to the table.
"""
import logging
import math
import re

import pytest
import torch
from trainer_factory import make_trainer

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.data.hetero import modalities
from pyg_mmrec.models import MODELS
from pyg_mmrec.train.checkpoint import seed_everything

NUM_USERS, NUM_ITEMS = 120, 80
BATCH_SIZE = 256
#: The modalities of the datasets with 1, 2 and 3 of them (first k).
ALL_MODALITIES = {'image': 32, 'text': 16, 'audio': 8}
COUNTS = (0, 1, 2, 3)

#: Small constructor settings per model (default: the model's own).
SMALL = {
    'lightgcn': dict(embedding_dim=16),
    'bm3': dict(embedding_dim=16),
    'mgcn': dict(embedding_dim=16),
    'lattice': dict(embedding_dim=16, feature_dim=8),
    'smore': dict(embedding_dim=16),
    'lgmrec': dict(embedding_dim=16),
    'dragon': dict(embedding_dim=16, hidden_dim=16, user_k=5),
    'diffmm': dict(embedding_dim=16, denoiser_hidden=32),
    'vbpr': dict(embedding_dim=16),
    'freedom': dict(embedding_dim=16),
    'fmcns': dict(embedding_dim=16),
    'mdmns': dict(embedding_dim=16, denoiser_hidden=32),
    'rearm': dict(embedding_dim=16, num_layers=2, user_knn_k=5,
                  item_knn_k=3),
    'genrec': dict(embedding_dim=16, denoiser_hidden=16, denoiser_layers=1,
                   denoiser_heads=2, denoiser_ff=16),
    'mcln': dict(embedding_dim=16, num_layers=2, num_blocks=1),
}


def _needs_features(cls_name: str) -> str:
    return rf"^{cls_name} needs item features .* has none"


#: (model, modality count) -> the pattern of the ValueError its constructor
#: raises (with its default settings). Every pair not listed must train.
#:
#: * No modality: every model with :attr:`requires_features` (all but the
#:   ID-only LightGCN and Pop) refuses.
#: * REARM pairs exactly two modalities (visual and textual channels): one
#:   is refused; with three, its :obj:`modalities` setting must choose two
#:   (:func:`test_rearm_modalities_setting_chooses_the_channels`).
REFUSES = {
    ('vbpr', 0): _needs_features('VBPR'),
    ('bm3', 0): _needs_features('BM3'),
    ('mgcn', 0): _needs_features('MGCN'),
    ('lattice', 0): _needs_features('LATTICE'),
    ('smore', 0): _needs_features('SMORE'),
    ('lgmrec', 0): _needs_features('LGMRec'),
    ('dragon', 0): _needs_features('DRAGON'),
    ('diffmm', 0): _needs_features('DiffMM'),
    ('freedom', 0): _needs_features('FREEDOM'),
    ('fmcns', 0): _needs_features('FMCNS'),
    ('mdmns', 0): _needs_features('MDMNS'),
    ('rearm', 0): _needs_features('REARM'),
    ('genrec', 0): _needs_features('GenRec'),
    ('mcln', 0): _needs_features('MCLN'),
    ('rearm', 1): (r"^REARM needs at least two item modalities .* the "
                   r"dataset 'synthetic' has one: image$"),
    ('rearm', 3): (r"^REARM pairs two modalities .* has three: image, text, "
                   r"audio; choose two with the model setting 'modalities'"),
}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def datasets():
    r"""Count -> a dataset with the first :obj:`count` modalities of
    :data:`ALL_MODALITIES`; same users, items and interactions."""
    out = {}
    for count in COUNTS:
        mods = dict(list(ALL_MODALITIES.items())[:count])
        out[count] = make_synthetic(num_users=NUM_USERS, num_items=NUM_ITEMS,
                                    modalities=mods, seed=3)
        assert modalities(out[count]) == list(mods)
    return out


def assert_scalar_terms(terms, what):
    assert terms, f"{what}: no loss term"
    for key, value in terms.items():
        assert isinstance(value, torch.Tensor), (
            f"{what}: loss term {key!r} is a {type(value).__name__}, not a "
            f"tensor")
        assert value.dim() == 0, f"{what}: loss term {key!r} is not a scalar"
        assert torch.isfinite(value), f"{what}: loss term {key!r} = {value}"


def assert_finite_metrics(metrics, what):
    assert metrics, f"{what}: no metric"
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    assert not bad, f"{what}: non-finite metrics {bad}"


def train_one_epoch(model, data, name):
    r"""One epoch through :meth:`Trainer.fit`, checking every loss term the
    model returns in it; then one batch of each stage's loss function."""
    seen = []
    hook = model.register_forward_hook(
        lambda module, args, out: seen.append(out))
    trainer = make_trainer(model, data, epochs=1, batch_size=BATCH_SIZE)
    try:
        results = trainer.fit()
    finally:
        hook.remove()
    if model.trainable:
        assert seen, f"{name}: fit() never called the model"
        for terms in seen:
            assert_scalar_terms(terms, name)
        losses = results['history'][0]['losses']
        assert all(math.isfinite(v) for v in losses.values()), losses
    for stage in model.stages():
        if stage.before is not None:
            stage.before()
        batch = next(iter(stage.source.batches(
            1, torch.Generator().manual_seed(0))))
        assert_scalar_terms(stage.loss(batch), f"{name} stage {stage.name}")
    return results


@pytest.mark.parametrize('count', COUNTS)
@pytest.mark.parametrize('name', list(MODELS))
def test_model_trains_or_refuses(datasets, name, count):
    data, cls = datasets[count], MODELS[name]
    kwargs = SMALL.get(name, {})
    seed_everything(0)
    refusal = REFUSES.get((name, count))
    if count == 0:  # the table agrees with the models' declarations
        assert (refusal is not None) == cls.requires_features, (
            f"{name}: requires_features={cls.requires_features} but the "
            f"table says it {'refuses' if refusal else 'trains on'} a "
            f"dataset without features")
    if refusal is not None:
        with pytest.raises(ValueError, match=refusal):
            cls(data, **kwargs)
        return
    model = cls(data, **kwargs)
    results = train_one_epoch(model, data, f'{name} ({count} modalities)')
    assert_finite_metrics(results['val'], name)
    assert_finite_metrics(results['test'], name)
    model.eval()
    scores = model.score(torch.arange(NUM_USERS))
    assert scores.shape == (NUM_USERS, NUM_ITEMS)
    assert torch.isfinite(scores).all()


def test_table_names_registered_models_only():
    assert {name for name, _ in REFUSES} <= set(MODELS)
    assert {count for _, count in REFUSES} <= set(COUNTS)


# The single-modality and three-modality rules of single models ------------
def test_mdmns_view_contrast_on_one_modality_is_a_logged_zero(datasets,
                                                             caplog):
    """cl_method 0 contrasts pairs of modality views: with one modality its
    'cl' term is a zero tensor (a warning says so); cl_method 1 has a real
    contrastive term."""
    data = datasets[1]
    seed_everything(0)
    with caplog.at_level(logging.WARNING, logger='pyg_mmrec'):
        model = MODELS['mdmns'](data, cl_method=0, **SMALL['mdmns'])
    assert re.search(r"cl_method=0 .* has one \(image\): its 'cl' term is 0",
                     caplog.text)
    losses = train_one_epoch(model, data, 'mdmns')['history'][0]['losses']
    assert losses['cl'] == 0.0
    seed_everything(0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger='pyg_mmrec'):
        model = MODELS['mdmns'](data, cl_method=1, **SMALL['mdmns'])
    assert 'cl_method' not in caplog.text
    losses = train_one_epoch(model, data, 'mdmns')['history'][0]['losses']
    assert losses['cl'] > 0


def test_rearm_modalities_setting_chooses_the_channels(datasets, caplog):
    """With three modalities REARM takes the two its 'modalities' setting
    names; image, if named, is the visual channel; the rest is logged as
    unused."""
    data, cls = datasets[3], MODELS['rearm']
    seed_everything(0)
    with caplog.at_level(logging.INFO, logger='pyg_mmrec'):
        model = cls(data, modalities=['audio', 'image'], **SMALL['rearm'])
    assert model.modalities == ('image', 'audio')
    assert 'not used: text' in caplog.text
    assert [x.size(1) for x in model.item_features] == [32, 8]
    results = train_one_epoch(model, data, 'rearm')
    assert_finite_metrics(results['test'], 'rearm')
    # Without image, the first named is the visual channel.
    assert cls(data, modalities=['audio', 'text'],
               **SMALL['rearm']).modalities == ('audio', 'text')
    # A dataset's only two need no setting; naming them is the same.
    two = datasets[2]
    assert cls(two, **SMALL['rearm']).modalities == ('image', 'text')
    assert cls(two, modalities=['text', 'image'],
               **SMALL['rearm']).modalities == ('image', 'text')
    for bad, match in ((['image'], 'two different'),
                       (['image', 'image'], 'two different'),
                       (['image', 'video'], r"names \['video'\], which the "
                                           r"dataset 'synthetic' lacks")):
        with pytest.raises(ValueError, match=match):
            cls(data, modalities=bad, **SMALL['rearm'])
