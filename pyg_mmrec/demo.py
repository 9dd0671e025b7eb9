"""``make run``: every registered model on the embedded synthetic dataset."""
import copy
import logging
import time
from typing import Dict, List, Tuple

from .config import demo_settings
from .data import load_dataset
from .experiment import run_experiment
from .models import MODELS

#: Settings for the trainable models in the demo: one batch size for every
#: model (not the models' own trainer defaults), a larger learning rate and a
#: shorter patience, so the whole demo takes a few minutes on two cores.
FAST = {'trainer': {'lr': 5e-3, 'epochs': 100, 'patience': 10},
        'loader': {'batch_size': 2048}}


log = logging.getLogger('pyg_mmrec')

def demo_configs() -> Dict[str, dict]:
    r"""The configuration of every registered model in the demo:
    :obj:`FAST` for the trainable ones, updated by the model's own
    :func:`~pyg_mmrec.config.demo_settings` (e.g. fewer epochs for a slow
    recipe), none for the others (e.g. Pop)."""
    out = {}
    for name, cls in MODELS.items():
        config = copy.deepcopy(FAST) if cls.trainable else {}
        for section, settings in demo_settings(name).items():
            config.setdefault(section, {}).update(settings)
        out[name] = config
    return out


#: :func:`demo_configs` of the models registered at import.
DEMO_CONFIGS: Dict[str, dict] = demo_configs()


def run_demo(seed: int = 0) -> Tuple[str, List[dict]]:
    r"""Trains every registered model (see :func:`demo_configs`) on the
    synthetic dataset with validation-based early stopping; returns a title
    and one row per model with the test metrics at the best validation
    epoch."""
    data = load_dataset('synthetic')
    rows, configs = [], demo_configs()
    start = time.perf_counter()
    for k, (model, config) in enumerate(configs.items(), 1):
        t0 = time.perf_counter()
        log.info("demo: model %d of %d: %s", k, len(configs), model)
        res = run_experiment(model, 'synthetic', config=config, seed=seed,
                             progress=False, data=data)
        spent = time.perf_counter() - start
        log.info("demo: %s done in %.0f s; about %.0f s left for the other "
                 "%d models at this pace", model, time.perf_counter() - t0,
                 spent / k * (len(configs) - k), len(configs) - k)
        rows.append({
            'model': model, 'best_epoch': res['best_epoch'],
            'recall@20': res['test']['recall@20'],
            'ndcg@20': res['test']['ndcg@20'],
            'time_per_epoch': res['time_per_epoch'],
            'total_time': time.perf_counter() - t0})
    title = (f"synthetic dataset ({data['user'].num_nodes} users, "
             f"{data['item'].num_nodes} items): test metrics at the best "
             f"validation epoch")
    own = {name: demo_settings(name) for name in MODELS
           if demo_settings(name)}
    if own:
        title += '; own demo settings: ' + '; '.join(
            f"{name} {settings}" for name, settings in own.items())
    return title, rows


def format_comparison(rows: List[dict], title: str = '') -> str:
    r"""A model comparison table."""
    header = (f"{'model':<10}{'recall@20':>11}{'ndcg@20':>10}"
              f"{'best ep.':>10}{'s/epoch':>9}{'total s':>9}")
    lines = [title, header, '-' * len(header)] if title else [header]
    for r in rows:
        lines.append(f"{r['model']:<10}{r['recall@20']:>11.4f}"
                     f"{r['ndcg@20']:>10.4f}{r['best_epoch']:>10d}"
                     f"{r['time_per_epoch']:>9.2f}{r['total_time']:>9.1f}")
    return '\n'.join(lines)
