"""One training run from a configuration (see :mod:`pyg_mmrec.config`):
dataset -> model -> trainer -> results. Shared by the command line, the
demo and the benchmarks."""
import json
import logging
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from .config import (
    SECTIONS,
    complete_config,
    find_config,
    load_config,
    normalize_config,
    resolve_config,
)
from .data import load_dataset
from .models import get_model
from .train import Trainer, build_evaluator, build_source, distributed
from .train.checkpoint import seed_everything
from .train.records import config_hash

log = logging.getLogger('pyg_mmrec')


def build_trainer(
    model: str,
    data,
    config: Optional[Mapping[str, Any]] = None,
    seed: int = 0,
    device: str = 'cpu',
    output_dir: Optional[str] = None,
    progress: bool = True,
) -> Tuple[Trainer, Dict[str, Any]]:
    r"""Builds a run from a configuration (see :mod:`pyg_mmrec.config`):
    the model from the :obj:`model` section (seeded by :obj:`seed`, on
    :obj:`device` with the data), :func:`~pyg_mmrec.train.build_source`
    from :obj:`loader`, :func:`~pyg_mmrec.train.build_evaluator` from
    :obj:`evaluation` and the :class:`~pyg_mmrec.train.Trainer` from
    :obj:`trainer`; under ``torchrun`` the model is wrapped in
    DistributedDataParallel. Returns the trainer and the run's record:
    the model name, the dataset, the seed and every setting of every
    section (see :func:`~pyg_mmrec.config.complete_config`), which the
    run should store (:obj:`trainer.fit(config=record)`)."""
    name = get_model(model).cli_name
    sections = resolve_config(name, config)
    evaluator = build_evaluator(data, seed, **sections['evaluation'])
    record = {'name': name, 'dataset': getattr(data, 'name', None),
              'seed': seed, **complete_config(name, sections)}
    log.info(format_settings(record))
    # The model builds its graphs (kNN: torch-cluster on a GPU) where the
    # data is, and trains there.
    data = data.to(device)
    seed_everything(seed)  # parameter initialisation
    net = get_model(name)(data, **sections['model']).to(device)
    # Under torchrun: one DistributedDataParallel replica per process.
    log.info("%r", net)
    wrapped = distributed.wrap_model(net)
    trainer = Trainer(
        wrapped, data, source=build_source(wrapped, data,
                                           **sections['loader']),
        evaluator=evaluator,
        seed=seed, checkpoint_dir=output_dir, progress=progress,
        **sections['trainer'])
    return trainer, record


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
    callbacks: Optional[Sequence] = None,
) -> Dict[str, Any]:
    r"""Trains :obj:`model` on :obj:`dataset` (see :func:`build_trainer`)
    and returns the trainer's results (see
    :meth:`pyg_mmrec.train.Trainer.fit`). The effective settings are logged
    at the start; the results' :obj:`"config"` holds the model name, the
    dataset, the seed and every setting of every section, and
    :obj:`"config_hash"` a short hash of it.

    Args:
        model (str): Registered model name.
        dataset (str): Dataset name or folder (see
            :func:`pyg_mmrec.data.load_dataset`).
        data_root (str, optional): Folder holding the datasets.
        config (Mapping, optional): The settings, by section or flat (see
            :func:`~pyg_mmrec.config.normalize_config`).
        seed (int): Seed of the run. (default: :obj:`0`)
        device (str): Device. (default: :obj:`"cpu"`)
        output_dir (str, optional): Checkpoints and :obj:`results.json`.
        resume (bool): Resume from :obj:`output_dir`. (default: :obj:`False`)
        progress (bool): Progress bars. (default: :obj:`True`)
        ks (Sequence[int], optional): Metric cut-offs, instead of the
            configuration's :obj:`evaluation.ks`.
        data (HeteroData, optional): An already loaded dataset to use
            instead of loading :obj:`dataset`.
        callbacks (Sequence, optional): Epoch callbacks of
            :meth:`~pyg_mmrec.train.Trainer.fit` (e.g.
            :class:`~pyg_mmrec.train.tensorboard.TensorBoardScalars`).
    """
    config = dict(config or {})
    if ks is not None:
        config['evaluation.ks'] = list(ks)
    resolve_config(model, config)  # bad settings fail before the data loads
    if data is None:
        data = load_dataset(dataset, root=data_root)
    trainer, record = build_trainer(model, data, config, seed, device,
                                    output_dir, progress)
    if record['dataset'] is None:
        record['dataset'] = dataset
    return trainer.fit(resume=resume, config=record,
                       callbacks=list(callbacks or []))


def format_settings(record: Mapping[str, Any]) -> str:
    r"""The effective settings of a run (see :func:`run_experiment`) as a
    compact block, one line per section."""
    lines = [f"settings of {record['name']} on {record['dataset']}, seed "
             f"{record['seed']} (config {config_hash(record)}):"]
    for section in SECTIONS:
        items = ' '.join(f'{k}={v}' for k, v in record[section].items())
        lines.append(f"  {section + ':':<11} {items or '-'}")
    return '\n'.join(lines)


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
    best = results['val' if sel == 'val' else 'test'][results['metric']]
    title = (f"best {'validation' if sel == 'val' else 'TEST'} epoch "
             f"{results['best_epoch']} ({results['metric']} {best:.4f})")
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


#: Settings renamed since older runs recorded them.
RENAMED = {'loader_workers': 'num_workers'}


def run_config(results: Mapping[str, Any]) -> Dict[str, Any]:
    r"""The configuration of a run's results: :obj:`{'name', 'dataset',
    'seed'}` and every setting of every section (see
    :func:`~pyg_mmrec.config.complete_config`), so that runs recorded with
    their overrides only (older runs) compare with complete ones. Results
    of older layouts are brought to this one: a flat configuration with the
    model name under :obj:`"model"`, settings since moved to another
    section (:obj:`select_on`, :obj:`metric`) or renamed (:obj:`RENAMED`).
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
    for section in SECTIONS[1:]:  # routed by key: sections have moved
        for key, value in (settings.pop(section, None) or {}).items():
            settings[RENAMED.get(key, key)] = value
    sections = resolve_config(name, normalize_config(name, settings, source))
    return {'name': name, 'dataset': dataset, 'seed': config.get('seed', 0),
            **complete_config(name, sections)}


def add_run_arguments(parser, config_help: str) -> None:
    r"""The options naming a run's model, dataset and settings file
    (:obj:`--model`, :obj:`--dataset`, :obj:`--data-root`,
    :obj:`--config`), which :func:`config_for` reads."""
    parser.add_argument('--model', required=True)
    parser.add_argument('--dataset', default='synthetic',
                        help="name under --data-root, a folder, or "
                        "'synthetic'")
    parser.add_argument('--data-root', default=None,
                        help='folder holding the datasets (default: '
                        '$PYG_MMREC_DATA or datasets/)')
    parser.add_argument('--config', default=None, help=config_help)


def config_for(args, model: str, say) -> Dict[str, Any]:
    r"""The settings of :obj:`model` from :obj:`args.config` (by default
    the dataset's YAML that has a section for it; :obj:`none`: none),
    saying which file was read."""
    path = args.config
    if path is None:
        path, looked = find_config(args.dataset, model)
        if path is None:
            say(f"config: no file with a section for '{model}' (looked at "
                f"{', '.join(looked)}); the defaults and the command line")
    elif path.lower() == 'none':
        path = None
        say("config: none (--config none); the defaults and the command "
            "line")
    config = load_config(path, model) if path else {}
    if path:
        say(f"config: {path} [{model}]")
    return config


def check_output_folder(path: str, option: str) -> None:
    r"""Refuses an output folder that is an existing file (before any work
    is done, not when the first result is written)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{option} {path}: is an existing file, not a "
                         f"folder")
