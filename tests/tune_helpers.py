"""Shared parts of the tune tests: a small dataset and a LightGCN space."""
from pyg_mmrec.data import make_synthetic
from pyg_mmrec.tune import SearchSpace
from pyg_mmrec.tune.report import load_study

FIXED = {'epochs': 3, 'patience': 5, 'eval_batch_size': 512}


def small():
    return make_synthetic(num_users=150, num_items=120, seed=0)


def lightgcn_space(**fixed):
    return SearchSpace('lightgcn', {
        'lr': {'low': 1e-3, 'high': 5e-2, 'log': True},
        'num_layers': [1, 2]}, {**FIXED, **fixed})


def states(folder):
    study, _ = load_study(folder)
    return [t.state for t in study.get_trials()]
