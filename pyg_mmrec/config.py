r"""Settings: a model's configuration by section, validated against the
constructors it feeds (names and types), and where it is read from.

A configuration has four sections: :obj:`model` (the model constructor's
keyword arguments), :obj:`trainer`, :obj:`loader` and :obj:`evaluation`
(together the keyword arguments of :class:`~pyg_mmrec.train.Trainer`).
Every value is checked against the annotation of the argument it sets
(:func:`check_type`): :obj:`--lr abc` or :obj:`batch_size: 1.5` is refused
with the key, the expected type and the value."""
import inspect
import os
import typing
from collections import abc
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from .models import MODELS, get_model
from .train import Trainer

#: The sections of a model's configuration, in order.
SECTIONS = ('model', 'trainer', 'loader', 'evaluation')

#: :class:`~pyg_mmrec.train.Trainer` arguments that are not settings: the
#: run itself passes them.
NON_SETTINGS = ('self', 'model', 'data', 'seed', 'device', 'checkpoint_dir',
                'resume', 'config', 'progress', 'callbacks', 'source')

#: The :class:`~pyg_mmrec.train.Trainer` arguments outside the
#: :obj:`trainer` section; every other one is in :obj:`trainer`.
SECTION_OF = {
    'batch_size': 'loader',
    'sampler': 'loader',
    'num_neighbors': 'loader',
    'negatives': 'loader',
    'loader_workers': 'loader',
    'protocol': 'evaluation',
    'num_negatives': 'evaluation',
    'eval_batch_size': 'evaluation',
    'test_masks': 'evaluation',
    'ks': 'evaluation',
}

_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY)


def _annotations(function) -> Dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:  # an annotation that does not resolve: unchecked
        return {}


def model_settings(model: str) -> Dict[str, Any]:
    r"""The keyword arguments of a model's constructor with their
    annotations (:obj:`typing.Any` where there is none); when it takes
    :obj:`**kwargs`, also those of its parent classes' constructors (up the
    MRO, until one without :obj:`**kwargs`)."""
    out: Dict[str, Any] = {}
    for cls in get_model(model).__mro__:
        if '__init__' not in vars(cls):
            continue
        params = inspect.signature(cls.__init__).parameters.values()
        hints = _annotations(cls.__init__)
        for p in params:
            if (p.kind in _KEYWORD and p.name not in ('self', 'data')
                    and p.name not in out):
                out[p.name] = hints.get(p.name, Any)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return out


def model_keys(model: str) -> Tuple[str, ...]:
    r"""The keyword arguments of a model's constructor (see
    :func:`model_settings`)."""
    return tuple(model_settings(model))


def setting_types(model: str) -> Dict[str, Dict[str, Any]]:
    r"""The annotation of every setting of :obj:`model`'s configuration, by
    section."""
    trainer = _annotations(Trainer.__init__)
    return {'model': model_settings(model), **{
        section: {key: trainer.get(key, Any) for key in keys}
        for section, keys in trainer_sections().items()}}


def type_name(annotation: Any) -> str:
    r"""A readable name of a type annotation, *e.g.* :obj:`"float or
    None"`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        return ' or '.join(type_name(a) for a in args)
    if origin is typing.Literal:
        return ' or '.join(map(repr, args))
    if origin in (list, tuple, abc.Sequence) and args:
        return f"a list of {type_name(args[0])}"
    if annotation is type(None):
        return 'None'
    return getattr(annotation, '__name__', str(annotation))


_NO_MATCH = object()

#: Integer settings named like these are sizes: a dimension, a batch or a
#: neighbour count of 0 builds an empty model or loops forever.
SIZE_SUFFIXES = ('_dim', '_size', '_hidden', '_heads', '_ff', '_k')


def _coerce(value: Any, annotation: Any) -> Any:
    # The value as the annotation takes it, or _NO_MATCH.
    if annotation is Any or annotation is inspect.Parameter.empty:
        return value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        for arm in args:
            out = _coerce(value, arm)
            if out is not _NO_MATCH:
                return out
        return _NO_MATCH
    if origin is typing.Literal:
        return value if value in args else _NO_MATCH
    if annotation is type(None):
        return value if value is None else _NO_MATCH
    if annotation is bool:
        return value if isinstance(value, bool) else _NO_MATCH
    if annotation is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)  # 1e3 read as a float
        return (value if isinstance(value, int)
                and not isinstance(value, bool) else _NO_MATCH)
    if annotation is float:
        return (float(value) if isinstance(value, (int, float))
                and not isinstance(value, bool) else _NO_MATCH)
    if annotation is str:
        return value if isinstance(value, str) else _NO_MATCH
    if origin in (list, tuple, abc.Sequence):
        if isinstance(value, str):  # a str is a Sequence[str]
            return value if args and args[0] is str else _NO_MATCH
        if not isinstance(value, (list, tuple)):
            return _NO_MATCH
        item = args[0] if args else Any
        out = [_coerce(v, item) for v in value]
        return _NO_MATCH if any(v is _NO_MATCH for v in out) else out
    if origin in (dict, abc.Mapping) or annotation in (dict, abc.Mapping):
        return value if isinstance(value, Mapping) else _NO_MATCH
    if isinstance(annotation, type):
        return value if isinstance(value, annotation) else _NO_MATCH
    return value  # an annotation this check does not know: unchecked


def check_type(value: Any, annotation: Any, name: str) -> Any:
    r"""The value of setting :obj:`name` as its :obj:`annotation` takes it
    (an integral float such as :obj:`1e3` for an :obj:`int`, an :obj:`int`
    for a :obj:`float`); an integer named like a size (see
    :obj:`SIZE_SUFFIXES`) must be positive.

    Raises:
        ValueError: If :obj:`value` does not have the annotated type,
            naming the setting, the expected type and the value.
    """
    out = _coerce(value, annotation)
    if out is _NO_MATCH:
        raise ValueError(f"setting '{name}' expects {type_name(annotation)}, "
                         f"got {value!r} ({type(value).__name__})")
    if (name.endswith(SIZE_SUFFIXES) and isinstance(out, int)
            and not isinstance(out, bool) and out < 1):
        raise ValueError(f"setting '{name}' is a size and must be >= 1, got "
                         f"{out}")
    return out


def trainer_sections() -> Dict[str, Tuple[str, ...]]:
    r"""The :class:`~pyg_mmrec.train.Trainer` settings of the
    :obj:`trainer`, :obj:`loader` and :obj:`evaluation` sections, read from
    its signature (minus :obj:`NON_SETTINGS`) and routed by
    :obj:`SECTION_OF`."""
    out: Dict[str, List[str]] = {s: [] for s in SECTIONS[1:]}
    for p in inspect.signature(Trainer.__init__).parameters.values():
        if p.kind in _KEYWORD and p.name not in NON_SETTINGS:
            out[SECTION_OF.get(p.name, 'trainer')].append(p.name)
    return {s: tuple(keys) for s, keys in out.items()}


def config_sections(model: str) -> Dict[str, Tuple[str, ...]]:
    r"""The keys each section of :obj:`model`'s configuration accepts."""
    return {'model': model_keys(model), **trainer_sections()}


def parse_value(value: str) -> Any:
    r"""Reads one setting's value from the command line as YAML (numbers,
    booleans, lists), with :obj:`1e-4`-style floats as numbers (YAML reads
    them as strings)."""
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str):
        try:
            return float(parsed)
        except ValueError:
            pass
    return parsed


def parse_settings(pairs: Sequence[str], option: str = '--set'
                   ) -> Dict[str, Any]:
    r"""Parses :obj:`key=value` pairs with :func:`parse_value`."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep or not key:
            raise ValueError(f"{option} expects key=value pairs, got {pair!r}")
        out[key] = parse_value(value)
    return out


def _allowed(sections: Mapping[str, Sequence[str]]) -> str:
    return '; '.join(f"{s}: {', '.join(keys) or 'none'}"
                     for s, keys in sections.items())


def normalize_config(model: str, config: Optional[Mapping[str, Any]],
                     source: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
    r"""Validates a model's configuration and returns it by section,
    :obj:`{'model': {...}, 'trainer': {...}, 'loader': {...},
    'evaluation': {...}}`.

    :obj:`config` maps section names to mappings of settings; a key outside
    the sections (a flat key, e.g. a command-line override
    :obj:`lr`) goes to the one section that accepts it, and a dotted key
    (:obj:`trainer.lr`) to the section it names. Flat keys take precedence
    over the sections, and dotted keys over both.

    Args:
        model (str): Registered model name.
        config (Mapping, optional): The settings.
        source (str, optional): Where :obj:`config` comes from (a file),
            named in the errors.
    """
    sections = config_sections(model)
    where = f"{source}: " if source else ''

    def unknown(key: str, section: Optional[str] = None) -> ValueError:
        if section is None:
            return ValueError(
                f"{where}model '{model}': unknown setting '{key}'; allowed: "
                f"{_allowed(sections)}")
        hint = ''.join(f" ('{key}' is a {s} setting)"
                       for s, keys in sections.items() if key in keys)
        return ValueError(
            f"{where}model '{model}': unknown {section} setting '{key}'"
            f"{hint}; allowed in '{section}': "
            f"{', '.join(sections[section]) or 'none'}")

    out: Dict[str, Dict[str, Any]] = {s: {} for s in sections}
    flat: List[Tuple[str, str, Any]] = []
    dotted: List[Tuple[str, str, Any]] = []
    for key, value in (config or {}).items():
        key = str(key)
        if key in sections:
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ValueError(f"{where}model '{model}': section '{key}' "
                                 f"must be a mapping, got {value!r}")
            for k, v in value.items():
                if k not in sections[key]:
                    raise unknown(k, key)
                out[key][k] = v
        elif '.' in key:
            section, _, k = key.partition('.')
            if section not in sections:
                raise ValueError(
                    f"{where}model '{model}': unknown section '{section}' in "
                    f"'{key}'; sections: {', '.join(sections)}")
            if k not in sections[section]:
                raise unknown(k, section)
            dotted.append((section, k, value))
        else:
            owners = [s for s, keys in sections.items() if key in keys]
            if len(owners) > 1:
                other = owners[1]
                raise ValueError(
                    f"{where}model '{model}': '{key}' is both a model argument "
                    f"of {get_model(model).__name__} and a {other} setting of "
                    f"the Trainer; put it in the 'model:' or '{other}:' "
                    f"section, or on the command line as --model.{key} / "
                    f"--{other}.{key}")
            if owners:
                flat.append((owners[0], key, value))
            elif isinstance(value, Mapping):
                raise ValueError(
                    f"{where}model '{model}': unknown section '{key}'; "
                    f"sections: {', '.join(sections)} ({_allowed(sections)})")
            else:
                raise unknown(key)
    for section, key, value in flat + dotted:
        out[section][key] = value
    types = setting_types(model)
    for section, settings in out.items():
        for key, value in settings.items():
            try:
                settings[key] = check_type(value, types[section][key], key)
            except ValueError as e:
                raise ValueError(f"{where}model '{model}': {section} {e}"
                                 ) from None
    return out


def resolve_config(model: str, config: Optional[Mapping[str, Any]] = None,
                   source: Optional[str] = None
                   ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    r"""Resolves a model's configuration (see :func:`normalize_config`)
    into :obj:`(model_kwargs, trainer_kwargs)`: the model constructor's
    arguments and the :class:`~pyg_mmrec.train.Trainer`'s (the
    :obj:`trainer`, :obj:`loader` and :obj:`evaluation` sections together),
    with the model's own :attr:`~pyg_mmrec.models.Recommender.trainer_defaults`
    (e.g. FMCNS's batch size 512 and learning rate 5e-4) where
    :obj:`config` does not set them."""
    sections = normalize_config(model, config, source)
    cls = get_model(model)
    trainer_keys = trainer_sections()
    for key, value in getattr(cls, 'trainer_defaults', {}).items():
        owner = [s for s, keys in trainer_keys.items() if key in keys]
        if not owner:
            raise ValueError(
                f"{cls.__name__}.trainer_defaults: unknown Trainer setting "
                f"'{key}'; allowed: {_allowed(trainer_keys)}")
        sections[owner[0]].setdefault(key, value)
    trainer_kwargs = {k: v for s in trainer_keys for k, v in sections[s].items()}
    return sections['model'], trainer_kwargs


def _read_yaml(path: str) -> Dict[str, Any]:
    try:
        with open(path) as f:
            config = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"--config: {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected one mapping per model name")
    return config


def load_config(path: str, model: str) -> Dict[str, Dict[str, Any]]:
    r"""Reads :obj:`model`'s section of a YAML configuration file (one
    top-level mapping per model name, each with the sections of
    :func:`normalize_config`) and returns it validated, by section."""
    model = get_model(model).cli_name
    config = _read_yaml(path)
    unknown = [k for k in config if k not in MODELS]
    if unknown:
        raise ValueError(
            f"{path}: top-level keys must be model names (one section per "
            f"model); unknown: {', '.join(map(str, unknown))}; models: "
            f"{', '.join(MODELS)}")
    if model not in config:
        raise ValueError(f"{path}: has sections {list(config)} but none for "
                         f"model '{model}'")
    section = config[model]
    if section is not None and not isinstance(section, Mapping):
        raise ValueError(f"{path}: model '{model}': expected a mapping of "
                         f"sections, got {section!r}")
    return normalize_config(model, section, source=path)


def config_dirs() -> List[Path]:
    r"""Where :func:`find_config` looks: :obj:`experiments/configs/` under
    the current directory, then in the repository checkout holding the
    package."""
    here = Path('experiments') / 'configs'
    repo = Path(__file__).resolve().parents[1] / 'experiments' / 'configs'
    return [here] if repo == here.resolve() else [here, repo]


def find_config(dataset: str, model: str) -> Tuple[Optional[str], List[str]]:
    r"""The per-dataset configuration file
    :obj:`experiments/configs/<dataset>.yaml` (the dataset's base name,
    lower-case) with a section for :obj:`model`, searched in
    :func:`config_dirs`. Returns the file (or :obj:`None`) and the paths
    looked at."""
    model = get_model(model).cli_name
    name = os.path.basename(os.path.normpath(dataset)).lower()
    looked = []
    for folder in config_dirs():
        path = folder / f'{name}.yaml'
        looked.append(str(path))
        if path.is_file() and model in _read_yaml(str(path)):
            return str(path), looked
    return None, looked
