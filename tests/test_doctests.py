"""The contract examples run as doctests: the base model, the batch, the
stage, the batch sources, the evaluation protocols and the trainer, in the
docstrings a new model's author reads first. They run with a small
synthetic dataset :obj:`data` and a LightGCN :obj:`model` on it in scope."""
import doctest
import importlib

import pytest
import torch

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.models import MODELS, get_model
from pyg_mmrec.train import Trainer, build_evaluator, build_source
from pyg_mmrec.train.checkpoint import seed_everything

#: The modules whose examples are the contract.
CONTRACT_MODULES = [
    'pyg_mmrec.models.base',
    'pyg_mmrec.models.registry',
    'pyg_mmrec.loader.batch',
    'pyg_mmrec.loader.sources',
    'pyg_mmrec.graphs.pairs',
    'pyg_mmrec.train.evaluator',
    'pyg_mmrec.train.protocols',
    'pyg_mmrec.train.sources',
    'pyg_mmrec.train.trainer',
]


@pytest.fixture(scope='module')
def scope():
    data = make_synthetic(num_users=300, num_items=200, seed=0)
    seed_everything(0)
    return {'torch': torch, 'data': data,
            'model': get_model('lightgcn')(data, embedding_dim=16),
            'get_model': get_model, 'train_graph': train_graph,
            'Trainer': Trainer, 'build_source': build_source,
            'build_evaluator': build_evaluator}


@pytest.mark.parametrize('name', CONTRACT_MODULES)
def test_contract_examples_run(name, scope, monkeypatch):
    module = importlib.import_module(name)
    # Examples may register a model: the registry is restored afterwards.
    monkeypatch.setattr('pyg_mmrec.models.registry.MODELS', dict(MODELS))
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = [t for t in finder.find(module, globs={**vars(module), **scope})
             if t.examples]
    assert tests, f"{name} has no example"
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} failing example(s) in {name}"
