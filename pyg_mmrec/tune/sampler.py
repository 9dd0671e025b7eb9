r"""The sampler of the studies: Optuna's TPE, seeded per trial (imported
when a study runs, with Optuna)."""
import numpy as np
from optuna.samplers import BaseSampler, TPESampler


class TrialSeededSampler(BaseSampler):
    r"""Optuna's TPE sampler (:class:`optuna.samplers.TPESampler`), made
    afresh for every trial with a seed drawn from :obj:`seed` and the
    trial's number.

    A sampler seeded once per process repeats its draws in every process:
    a study continued by a new :obj:`tune` process, or two workers started
    with the same :obj:`--seed`, would try the settings of earlier trials
    again (the random start-up trials above all). Seeded per trial, the
    draws of trial :math:`n` depend only on :obj:`seed`, :math:`n` and the
    trials before it, however many processes run the study, and no two
    trials share a random stream.

    Args:
        seed (int): The study's seed.
    """
    def __init__(self, seed: int):
        self.seed = seed
        self.tpe = TPESampler(seed=seed)

    def before_trial(self, study, trial) -> None:
        state = np.random.SeedSequence([self.seed, trial.number])
        self.tpe = TPESampler(seed=int(state.generate_state(1)[0]))
        self.tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self.tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name,
                           param_distribution):
        return self.tpe.sample_independent(study, trial, param_name,
                                           param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self.tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.tpe.reseed_rng()
