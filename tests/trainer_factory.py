"""Builds a :class:`~pyg_mmrec.train.Trainer` for a model instance from
flat settings, routed as a configuration routes them: loader settings to
:func:`~pyg_mmrec.train.build_source`, evaluation settings to
:func:`~pyg_mmrec.train.build_evaluator`, the :meth:`Trainer.fit`
arguments (:obj:`resume`, :obj:`config`, :obj:`callbacks`) to its
:meth:`fit`, the rest to the trainer."""
import functools

from pyg_mmrec.config import trainer_sections
from pyg_mmrec.train import Trainer, build_evaluator, build_source

FIT_ARGS = ('resume', 'config', 'callbacks')


def make_trainer(model, data, seed=0, checkpoint_dir=None, progress=False,
                 **settings):
    sections = trainer_sections()
    loader = {k: settings.pop(k) for k in list(settings)
              if k in sections['loader']}
    evaluation = {k: settings.pop(k) for k in list(settings)
                  if k in sections['evaluation']}
    fit_args = {k: settings.pop(k) for k in FIT_ARGS if k in settings}
    trainer = Trainer(model, data,
                      source=build_source(model, data, **loader),
                      evaluator=build_evaluator(data, seed, **evaluation),
                      seed=seed, checkpoint_dir=checkpoint_dir,
                      progress=progress, **settings)
    trainer.fit = functools.partial(trainer.fit, **fit_args)
    return trainer
