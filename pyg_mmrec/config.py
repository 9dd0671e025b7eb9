r"""Settings: a model's configuration by section, validated against the
functions it feeds (names and types), and where it is read from.

A configuration has four sections, each the keyword arguments of what it
builds:

* :obj:`model`: the model's constructor;
* :obj:`trainer`: the keyword-only arguments of
  :class:`~pyg_mmrec.train.Trainer` (optimiser, epochs, early stopping);
* :obj:`loader`: those of :func:`~pyg_mmrec.train.build_source` (the
  batches: sampler, batch size, neighbours, negatives);
* :obj:`evaluation`: those of :func:`~pyg_mmrec.train.build_evaluator`
  (protocol, cut-offs, test masks, and the model selection: split and
  metric).

**Precedence**, lowest first: the functions' defaults < the model's own
(:func:`model_defaults`, ``pyg_mmrec/configs/<model>.yaml``) < the YAML file
(:obj:`--config`, or :obj:`experiments/configs/<dataset>.yaml` when it has
a section for the model) < the command line (:obj:`--key value`; a flat
key goes to the one section that has it, :obj:`--section.key value` names
the section). Every value is checked against the annotation of the
argument it sets (:func:`check_type`): :obj:`--lr abc` or
:obj:`batch_size: 1.5` is refused with the key, the expected type and the
value. A run records every setting (:func:`complete_config`)."""
import inspect
import os
import re
import typing
from collections import abc
from pathlib import Path
from typing import (Any, Dict, List, Mapping, NamedTuple, Optional, Sequence,
                    Tuple)

import yaml

from .models import MODELS, get_model
from .train import PROTOCOLS, Trainer, build_evaluator, build_source

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


def argument_help(function) -> Dict[str, str]:
    r"""The first sentence of each argument's entry in the :obj:`Args:`
    section of :obj:`function`'s docstring (or its class's), without its
    :obj:`(default: ...)`."""
    doc = inspect.getdoc(function) or ''
    if 'Args:' not in doc and inspect.isfunction(function):
        owner = getattr(inspect.getmodule(function),
                        function.__qualname__.split('.')[0], None)
        doc = inspect.getdoc(owner) or '' if owner is not function else doc
    out: Dict[str, str] = {}
    lines = doc.split('Args:', 1)[1].splitlines() if 'Args:' in doc else []
    name, indent, text = None, None, []
    for line in lines + ['']:
        stripped = line.strip()
        depth = len(line) - len(line.lstrip())
        match = re.match(r'(\w+) \(([^)]*)\):\s*(.*)', stripped)
        if match and (indent is None or depth <= indent):
            if name:
                out[name] = _first_sentence(' '.join(text))
            name, indent, text = match.group(1), depth, [match.group(3)]
        elif name and stripped and depth > indent:
            text.append(stripped)
        elif name:  # the end of the section
            out[name] = _first_sentence(' '.join(text))
            name = None
            if stripped and depth <= (indent or 0) and stripped.endswith(':'):
                break
    return out


def _first_sentence(text: str) -> str:
    text = re.sub(r'\(default: .*?\)\s*$', '', text).strip()
    text = re.sub(r':(obj|class|func|meth|attr|math):`~?([^`]*)`', r'\2',
                  text)
    match = re.match(r'(.+?\.)(\s|$)', text)
    return (match.group(1) if match else text).strip()


def format_settings_help(model: str) -> str:
    r"""Every setting of :obj:`model`, by section: its default and one line
    of help from the docstring of the function it feeds (``python -m
    pyg_mmrec models NAME``)."""
    helps = {'model': {}, 'trainer': argument_help(Trainer),
             'loader': argument_help(build_source),
             'evaluation': argument_help(build_evaluator)}
    for cls in reversed(get_model(model).__mro__):
        if cls.__doc__:
            helps['model'].update(argument_help(cls))
    own_defaults = model_defaults(model)
    lines = []
    for section, settings in all_settings(model).items():
        lines.append(f"{section}:")
        for key, setting in settings.items():
            mine = own_defaults.get(section, {})
            default = mine.get(key, setting.default)
            shown = ('required' if default is inspect.Parameter.empty
                     else repr(default))
            own = ' (the model\'s)' if key in mine else ''
            lines.append(f"  {key} = {shown}{own}  "
                         f"[{type_name(setting.annotation)}]")
            if helps[section].get(key):
                lines.append(f"      {helps[section][key]}")
    return '\n'.join(lines)


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
    types = all_settings(model)
    for section, settings in out.items():
        for key, value in settings.items():
            try:
                settings[key] = check_type(
                    value, types[section][key].annotation, key)
            except ValueError as e:
                raise ValueError(f"{where}model '{model}': {section} {e}"
                                 ) from None
    return out


def resolve_config(model: str, config: Optional[Mapping[str, Any]] = None,
                   source: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
    r"""Resolves a model's configuration (see :func:`normalize_config`)
    by section, with the model's own defaults (:func:`model_defaults`,
    e.g. FMCNS's batch size 512 and learning rate 5e-4) where
    :obj:`config` does not set them: the keyword arguments of the model, the
    :class:`~pyg_mmrec.train.Trainer`,
    :func:`~pyg_mmrec.train.build_source` and
    :func:`~pyg_mmrec.train.build_evaluator`."""
    sections = normalize_config(model, config, source)
    for section, settings in model_defaults(model).items():
        for key, value in settings.items():
            sections[section].setdefault(key, value)
    return sections


#: The folder of the per-model defaults, ``<model>.yaml``.
MODEL_CONFIGS = Path(__file__).resolve().parent / 'configs'


def _model_file(model: str) -> Dict[str, Any]:
    path = MODEL_CONFIGS / f'{get_model(model).cli_name}.yaml'
    return _read_yaml(str(path)) if path.is_file() else {}


def model_defaults(model: str) -> Dict[str, Dict[str, Any]]:
    r"""The settings of :obj:`model`'s original recipe (its batch size,
    learning rate, ...) by section, from ``pyg_mmrec/configs/<model>.yaml``
    (empty sections without one): they apply where a configuration does
    not set them (see :func:`resolve_config`)."""
    raw = {k: v for k, v in _model_file(model).items() if k != 'demo'}
    path = str(MODEL_CONFIGS / f'{get_model(model).cli_name}.yaml')
    sections = normalize_config(model, raw, source=path)
    if sections['model']:
        raise ValueError(f"{path}: model arguments belong in the model's "
                         f"constructor defaults, not in its defaults file")
    return sections


def demo_settings(model: str) -> Dict[str, Dict[str, Any]]:
    r"""The settings the demo (``make run``) applies to :obj:`model` on top
    of its fast ones (*e.g.* fewer epochs for a slow recipe): the
    :obj:`demo` mapping of ``pyg_mmrec/configs/<model>.yaml``."""
    demo = _model_file(model).get('demo') or {}
    path = str(MODEL_CONFIGS / f'{get_model(model).cli_name}.yaml')
    return {k: v for k, v in normalize_config(model, demo, path).items()
            if v}


def complete_config(model: str, sections: Mapping[str, Mapping[str, Any]]
                    ) -> Dict[str, Dict[str, Any]]:
    r"""Every setting of :obj:`model`'s configuration: those of
    :obj:`sections` (see :func:`resolve_config`), else their default, by
    section and in signature order, as JSON values (tuples as lists): what
    a run records."""
    out: Dict[str, Dict[str, Any]] = {}
    for section, settings in all_settings(model).items():
        given = sections.get(section, {})
        out[section] = {
            key: _plain(given[key] if key in given else setting.default)
            for key, setting in settings.items()
            if key in given or setting.default is not inspect.Parameter.empty}
    _fill_protocol_defaults(out['evaluation'])
    return out


def _fill_protocol_defaults(evaluation: Dict[str, Any]) -> None:
    # The protocol's own cut-offs, batch size and selection metric where
    # the evaluation section leaves them to it (None).
    protocol = PROTOCOLS.get(evaluation.get('protocol'))
    if protocol is None:
        return
    params = inspect.signature(protocol.__init__).parameters
    defaults = {'ks': list(params['ks'].default),
                'eval_batch_size': params['batch_size'].default,
                'metric': protocol.default_metric}
    for key, value in defaults.items():
        if evaluation.get(key) is None:
            evaluation[key] = value


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


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
