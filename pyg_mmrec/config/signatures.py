r"""The settings of each section, read from the signatures of what the
section builds: the model's constructor, the
:class:`~pyg_mmrec.train.Trainer`, :func:`~pyg_mmrec.train.build_source`
and :func:`~pyg_mmrec.train.build_evaluator`."""
import inspect
import typing
from typing import Any, Dict, NamedTuple, Tuple

from ..models import get_model
from ..train import Trainer, build_evaluator, build_source

#: The sections of a model's configuration, in order.
SECTIONS = ('model', 'trainer', 'loader', 'evaluation')


class Setting(NamedTuple):
    r"""One setting: its annotation and default (:obj:`inspect.Parameter.
    empty` when it has none)."""
    annotation: Any
    default: Any


def _annotations(function) -> Dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # an annotation that does not resolve: unchecked
        return {}


def _settings(function, kinds, skip=('self', 'data')) -> Dict[str, Setting]:
    hints = _annotations(function)
    return {p.name: Setting(hints.get(p.name, Any), p.default)
            for p in inspect.signature(function).parameters.values()
            if p.kind in kinds and p.name not in skip}


def model_settings(model: str) -> Dict[str, Setting]:
    r"""The keyword arguments of a model's constructor; when it takes
    :obj:`**kwargs`, also those of its parent classes' constructors (up the
    MRO, until one without :obj:`**kwargs`)."""
    out: Dict[str, Setting] = {}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD,
             inspect.Parameter.KEYWORD_ONLY)
    for cls in get_model(model).__mro__:
        if '__init__' not in vars(cls):
            continue
        for name, setting in _settings(cls.__init__, kinds).items():
            out.setdefault(name, setting)
        params = inspect.signature(cls.__init__).parameters.values()
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return out


def runner_settings() -> Dict[str, Dict[str, Setting]]:
    r"""The settings of the :obj:`trainer`, :obj:`loader` and
    :obj:`evaluation` sections: the keyword-only arguments of
    :class:`~pyg_mmrec.train.Trainer`,
    :func:`~pyg_mmrec.train.build_source` and
    :func:`~pyg_mmrec.train.build_evaluator` (their other arguments are
    the objects and the run's own: model, data, seed, folders)."""
    kinds = (inspect.Parameter.KEYWORD_ONLY, )
    return {'trainer': _settings(Trainer.__init__, kinds),
            'loader': _settings(build_source, kinds),
            'evaluation': _settings(build_evaluator, kinds)}


def all_settings(model: str) -> Dict[str, Dict[str, Setting]]:
    r"""Every setting of :obj:`model`'s configuration, by section."""
    return {'model': model_settings(model), **runner_settings()}


def model_keys(model: str) -> Tuple[str, ...]:
    r"""The keyword arguments of a model's constructor (see
    :func:`model_settings`)."""
    return tuple(model_settings(model))


def trainer_sections() -> Dict[str, Tuple[str, ...]]:
    r"""The keys of the :obj:`trainer`, :obj:`loader` and
    :obj:`evaluation` sections (see :func:`runner_settings`)."""
    return {s: tuple(keys) for s, keys in runner_settings().items()}


def config_sections(model: str) -> Dict[str, Tuple[str, ...]]:
    r"""The keys each section of :obj:`model`'s configuration accepts."""
    return {s: tuple(keys) for s, keys in all_settings(model).items()}
