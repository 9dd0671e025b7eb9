r"""Hyper-parameter search on the validation split, on Optuna: search
spaces (:mod:`~pyg_mmrec.tune.space`), studies with pruning, parallel
workers and resumption, and the final runs of the best settings
(:mod:`~pyg_mmrec.tune.study`), and their report
(:mod:`~pyg_mmrec.tune.report`)."""
from .space import MMREC_NAMES, SearchSpace, load_space
from .study import run_study

__all__ = ['MMREC_NAMES', 'SearchSpace', 'load_space', 'run_study']
