"""One training run from a configuration (see :mod:`pyg_mmrec.config`):
dataset -> model -> trainer -> results. Shared by the command line, the
demo and the benchmarks."""
import json
import logging
import os
from typing import Any, Dict, Mapping, Optional, Sequence

from .config import normalize_config, resolve_config, trainer_sections
from .data import load_dataset
from .models import get_model
from .train import Trainer, distributed
from .train.checkpoint import seed_everything

log = logging.getLogger('pyg_mmrec')


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
