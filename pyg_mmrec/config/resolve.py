r"""A model's configuration: parsed, validated by section, completed with
the model's own defaults and the functions' defaults, and where it is read
from (see :mod:`pyg_mmrec.config`)."""
import inspect
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from ..models import MODELS, get_model
from ..train import PROTOCOLS
from .signatures import all_settings, config_sections
from .types import check_type


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
                     source: Optional[str] = None
                     ) -> Dict[str, Dict[str, Any]]:
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
                    f"{where}model '{model}': '{key}' is both a model "
                    f"argument of {get_model(model).__name__} and a {other} "
                    f"setting of the Trainer; put it in the 'model:' or "
                    f"'{other}:' section, or on the command line as "
                    f"--model.{key} / --{other}.{key}")
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
MODEL_CONFIGS = Path(__file__).resolve().parent / 'models'


def _model_file(model: str) -> Dict[str, Any]:
    path = MODEL_CONFIGS / f'{get_model(model).cli_name}.yaml'
    return read_yaml(str(path)) if path.is_file() else {}


def model_defaults(model: str) -> Dict[str, Dict[str, Any]]:
    r"""The settings of :obj:`model`'s original recipe (its batch size,
    learning rate, ...) by section, from
    ``pyg_mmrec/config/models/<model>.yaml`` (empty sections without one):
    they apply where a configuration does not set them (see
    :func:`resolve_config`)."""
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
    :obj:`demo` mapping of ``pyg_mmrec/config/models/<model>.yaml``."""
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


def read_yaml(path: str, expected: str = 'one mapping per model name'
              ) -> Dict[str, Any]:
    r"""The mapping in the YAML file :obj:`path`; a clear error naming the
    file when it is missing, not YAML, or not a mapping (:obj:`expected`
    says what it should hold)."""
    try:
        with open(path) as f:
            config = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"--config: {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected {expected}")
    return config


def load_config(path: str, model: str) -> Dict[str, Dict[str, Any]]:
    r"""Reads :obj:`model`'s section of a YAML configuration file (one
    top-level mapping per model name, each with the sections of
    :func:`normalize_config`) and returns it validated, by section."""
    model = get_model(model).cli_name
    config = read_yaml(path)
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


#: The per-dataset configurations shipped with the package (package data;
#: the checkout's :obj:`experiments/configs` links here).
DATASET_CONFIGS = Path(__file__).resolve().parent / 'datasets'


def config_dirs() -> List[Path]:
    r"""Where :func:`find_config` looks: :obj:`experiments/configs/` under
    the current directory (a user's own settings), then the configurations
    shipped with the package (:data:`DATASET_CONFIGS`, found by an
    installed wheel too)."""
    here = Path('experiments') / 'configs'
    if here.resolve() == DATASET_CONFIGS:
        return [DATASET_CONFIGS]
    return [here, DATASET_CONFIGS]


def find_config(dataset: str, model: str) -> Tuple[Optional[str], List[str]]:
    r"""The per-dataset configuration file :obj:`<dataset>.yaml` (the
    dataset's base name, lower-case) with a section for :obj:`model`,
    searched in :func:`config_dirs`. Returns the file (or :obj:`None`) and
    the paths looked at."""
    model = get_model(model).cli_name
    name = os.path.basename(os.path.normpath(dataset)).lower()
    looked = []
    for folder in config_dirs():
        path = folder / f'{name}.yaml'
        looked.append(str(path))
        if path.is_file() and model in read_yaml(str(path)):
            return str(path), looked
    return None, looked
