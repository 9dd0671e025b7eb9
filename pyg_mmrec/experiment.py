"""One training run from a configuration: dataset -> model -> trainer ->
results. Shared by the command line, the demo and the benchmarks.

A configuration has four sections: :obj:`model` (the model constructor's
keyword arguments), :obj:`trainer`, :obj:`loader` and :obj:`evaluation`
(together the keyword arguments of :class:`~pyg_mmrec.train.Trainer`)."""
import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from .data import load_dataset
from .models import MODELS, get_model
from .train import Trainer, distributed
from .train.checkpoint import seed_everything

log = logging.getLogger('pyg_mmrec')

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


def model_keys(model: str) -> Tuple[str, ...]:
    r"""The keyword arguments of a model's constructor; when it takes
    :obj:`**kwargs`, also those of its parent classes' constructors (up the
    MRO, until one without :obj:`**kwargs`)."""
    keys: List[str] = []
    for cls in get_model(model).__mro__:
        if '__init__' not in vars(cls):
            continue
        params = inspect.signature(cls.__init__).parameters.values()
        keys += [p.name for p in params if p.kind in _KEYWORD
                 and p.name not in ('self', 'data') and p.name not in keys]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return tuple(keys)


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


def run_experiment(
    model: str,
    dataset: str,
    data_root: Optional[str] = None,
    config: Optional[Mapping[str, Any]] = None,
    seed: int = 0,
    device: str = 'cpu',
    output_dir: Optional[str] = None,
    resume: bool = False,
    progress: bool = True,
    ks: Optional[Sequence[int]] = None,
    data=None,
) -> Dict[str, Any]:
    r"""Trains :obj:`model` on :obj:`dataset` and returns the trainer's
    results (see :meth:`pyg_mmrec.train.Trainer.fit`); their
    :obj:`"config"` holds the model name, the dataset, the seed and the
    resolved sections (see :func:`resolve_config`).

    Args:
        model (str): Registered model name.
        dataset (str): Dataset name or folder (see
            :func:`pyg_mmrec.data.load_dataset`).
        data_root (str, optional): Folder holding the datasets.
        config (Mapping, optional): Model and trainer settings, by section
            or flat (see :func:`normalize_config`).
        seed (int): Seed of the run. (default: :obj:`0`)
        device (str): Device. (default: :obj:`"cpu"`)
        output_dir (str, optional): Checkpoints and :obj:`results.json`.
        resume (bool): Resume from :obj:`output_dir`. (default: :obj:`False`)
        progress (bool): Progress bars. (default: :obj:`True`)
        ks (Sequence[int], optional): Metric cut-offs, instead of the
            configuration's :obj:`evaluation.ks`.
        data (HeteroData, optional): An already loaded dataset to use
            instead of loading :obj:`dataset`.
    """
    config = dict(config or {})
    if ks is not None:
        config['evaluation.ks'] = list(ks)
    model_kwargs, trainer_kwargs = resolve_config(model, config)
    if data is None:
        data = load_dataset(dataset, root=data_root)
    # The model builds its graphs (kNN: torch-cluster on a GPU) where the
    # data is.
    data = data.to(device)
    seed_everything(seed)  # parameter initialisation
    net = get_model(model)(data, **model_kwargs)
    log.info("%r", net)
    full_config = {'name': get_model(model).cli_name,
                   'dataset': getattr(data, 'name', dataset), 'seed': seed,
                   'model': model_kwargs}
    for section, keys in trainer_sections().items():
        full_config[section] = {k: v for k, v in trainer_kwargs.items()
                                if k in keys}
    # Under torchrun: one DistributedDataParallel replica per process.
    trainer = Trainer(distributed.wrap_model(net), data, seed=seed,
                      device=device, checkpoint_dir=output_dir, resume=resume,
                      config=full_config, progress=progress, **trainer_kwargs)
    num_parameters = sum(p.numel() for p in net.parameters())
    results = trainer.fit()
    results['model_repr'] = repr(net)
    results['num_parameters'] = num_parameters
    return results


def format_results_table(results: Mapping[str, Any]) -> str:
    r"""The test metrics at the selected epoch as a metric x K table."""
    test = results['test']
    names, ks = [], []
    for key in test:
        name, k = key.split('@')
        if name not in names:
            names.append(name)
        if int(k) not in ks:
            ks.append(int(k))
    ks.sort()
    header = f"{'test metric':<12}" + ''.join(f"{'@' + str(k):>9}" for k in ks)
    lines = [header, '-' * len(header)]
    for name in names:
        lines.append(f"{name:<12}" + ''.join(
            f"{test.get(f'{name}@{k}', float('nan')):>9.4f}" for k in ks))
    sel = results['selection']
    title = (f"best {'validation' if sel == 'val' else 'TEST'} epoch "
             f"{results['best_epoch']} ({results['metric']} "
             f"{results['val' if sel == 'val' else 'test'][results['metric']]:.4f})")
    if sel != 'val':
        title += f"\n[{sel}]"
    protocol = results.get('protocol', 'full ranking')
    if protocol != 'full ranking':
        title += f"\n[evaluation protocol: {protocol}]"
    if results.get('test_mask') == 'train':
        title += ("\n[test pass masks the training items only (MMRec/DiffMM "
                  "rule): validation items may be recommended]")
    return title + '\n' + '\n'.join(lines)


def read_results(run_dir: str) -> Dict[str, Any]:
    r"""The :obj:`results.json` of a run directory (see
    :meth:`pyg_mmrec.train.Trainer.fit`), with the directory added as
    :obj:`"run_dir"`.

    Raises:
        FileNotFoundError: If :obj:`run_dir` holds no :obj:`results.json`.
        ValueError: If it is not valid JSON.
    """
    path = os.path.join(run_dir, 'results.json')
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{run_dir}: no results.json (not a run directory, or the run "
            f"has not finished)")
    try:
        with open(path) as f:
            results = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(results, dict) or not isinstance(
            results.get('config'), dict):
        raise ValueError(f"{path}: expected a results object with a 'config'")
    results['run_dir'] = run_dir
    return results


def run_config(results: Mapping[str, Any]) -> Dict[str, Any]:
    r"""The configuration of a run's results: :obj:`{'name', 'dataset',
    'seed'}` and the sections of :func:`normalize_config`. Results of older
    runs, whose flat configuration holds the model name under
    :obj:`"model"` and every setting beside it, are brought to this layout.
    """
    config = dict(results['config'])
    source = results.get('run_dir')
    if isinstance(config.get('model'), str):  # the older, flat layout
        config['name'] = config.pop('model')
    name, dataset = config.get('name'), config.get('dataset')
    if not name or dataset is None:
        raise ValueError(f"{source or 'results'}: the configuration names no "
                         f"model or no dataset")
    settings = {k: v for k, v in config.items()
                if k not in ('name', 'dataset', 'seed')}
    return {'name': name, 'dataset': dataset, 'seed': config.get('seed', 0),
            **normalize_config(name, settings, source)}
