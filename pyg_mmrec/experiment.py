"""One training run from a configuration: dataset -> model -> trainer ->
results. Shared by the command line, the demo and the benchmarks."""
import inspect
import logging
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import yaml

from .data import load_dataset
from .models import get_model
from .train import Trainer
from .train.checkpoint import seed_everything

log = logging.getLogger('pyg_mmrec')

#: Trainer arguments that a configuration may set.
TRAINER_KEYS = ('lr', 'weight_decay', 'batch_size', 'epochs', 'patience',
                'eval_every', 'metric', 'eval_batch_size', 'select_on',
                'test_masks')


def model_keys(model: str) -> Tuple[str, ...]:
    r"""Hyper-parameters accepted by a model's constructor."""
    params = inspect.signature(get_model(model).__init__).parameters
    return tuple(k for k in params if k not in ('self', 'data'))


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


def load_config(path: str, model: str) -> Dict[str, Any]:
    r"""Reads a YAML configuration. A file whose top level has a section
    named after the model (e.g. per-dataset files with one section per
    model) yields that section; any other mapping is used as it is."""
    try:
        with open(path) as f:
            config = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"--config: {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping of keys to values")
    if model in config and isinstance(config[model], dict):
        return dict(config[model])
    sections = [k for k, v in config.items() if isinstance(v, dict)]
    if sections:
        raise ValueError(f"{path}: has sections {sections} but none for "
                         f"model '{model}'")
    return config


def with_model_defaults(model: str, config: Mapping[str, Any]
                        ) -> Dict[str, Any]:
    r"""The configuration with the model's own trainer settings
    (:attr:`Recommender.trainer_defaults`, e.g. FMCNS's batch size 512 and
    learning rate 5e-4) filled in where :obj:`config` does not set them."""
    return {**get_model(model).trainer_defaults, **config}


def split_config(model: str, config: Mapping[str, Any]
                 ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    r"""Splits a flat configuration into (model kwargs, trainer kwargs),
    filling in the model's own trainer defaults (see
    :func:`with_model_defaults`), and rejects keys that neither accepts."""
    config = with_model_defaults(model, config)
    mkeys = model_keys(model)
    model_kwargs, trainer_kwargs = {}, {}
    for key, value in config.items():
        if key in mkeys:
            model_kwargs[key] = value
        elif key in TRAINER_KEYS:
            trainer_kwargs[key] = value
        else:
            raise ValueError(
                f"unknown setting '{key}' for model '{model}'; model "
                f"settings: {', '.join(mkeys) or 'none'}; trainer settings: "
                f"{', '.join(TRAINER_KEYS)}")
    return model_kwargs, trainer_kwargs


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
    ks: Sequence[int] = (5, 10, 20, 50),
    data=None,
) -> Dict[str, Any]:
    r"""Trains :obj:`model` on :obj:`dataset` and returns the trainer's
    results (see :meth:`pyg_mmrec.train.Trainer.fit`).

    Args:
        model (str): Registered model name.
        dataset (str): Dataset name or folder (see
            :func:`pyg_mmrec.data.load_dataset`).
        data_root (str, optional): Folder holding the datasets.
        config (Mapping, optional): Model and trainer settings (flat).
        seed (int): Seed of the run. (default: :obj:`0`)
        device (str): Device. (default: :obj:`"cpu"`)
        output_dir (str, optional): Checkpoints and :obj:`results.json`.
        resume (bool): Resume from :obj:`output_dir`. (default: :obj:`False`)
        progress (bool): Progress bars. (default: :obj:`True`)
        ks (Sequence[int]): Metric cut-offs.
        data (HeteroData, optional): An already loaded dataset to use
            instead of loading :obj:`dataset`.
    """
    config = with_model_defaults(model, config or {})
    model_kwargs, trainer_kwargs = split_config(model, config)
    if data is None:
        data = load_dataset(dataset, root=data_root)
    # The model builds its graphs (kNN: torch-cluster on a GPU) where the
    # data is.
    data = data.to(device)
    seed_everything(seed)  # parameter initialisation
    net = get_model(model)(data, **model_kwargs)
    log.info("%r", net)
    full_config = {'model': model, 'dataset': getattr(data, 'name', dataset),
                   'seed': seed, **config}
    trainer = Trainer(net, data, seed=seed, device=device, ks=ks,
                      checkpoint_dir=output_dir, resume=resume,
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
    if results.get('test_mask') == 'train':
        title += ("\n[test pass masks the training items only (MMRec/DiffMM "
                  "rule): validation items may be recommended]")
    return title + '\n' + '\n'.join(lines)
