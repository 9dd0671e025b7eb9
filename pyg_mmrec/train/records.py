r"""What a run reports: per-epoch log lines, results files, peak memory and
the memory allocator in use."""
import hashlib
import json
import os
import resource
from typing import Any, Dict, List, Sequence

import torch

from .checkpoint import no_space_error
from .divergence import finite_or_none


def peak_memory_mb() -> float:
    r"""Peak resident memory of this process (MiB), plus the CUDA peak when a
    GPU was used."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak += torch.cuda.max_memory_allocated() / 2**20
    return peak


def memory_allocator() -> str:
    r"""The CPU memory allocator of this process as its environment sets it
    (jemalloc through :obj:`LD_PRELOAD` or glibc, with its settings): it
    changes peak memory and speed a lot, so benchmarks record it."""
    if 'jemalloc' in os.environ.get('LD_PRELOAD', ''):
        conf = os.environ.get('MALLOC_CONF')
        return 'jemalloc' + (f' {conf}' if conf else '')
    tunables = os.environ.get('GLIBC_TUNABLES')
    return 'glibc' + (f' {tunables}' if tunables else '')


def config_hash(config: Any) -> str:
    r"""A short hash of a configuration (its JSON with sorted keys): two
    runs with the same hash ran with the same settings."""
    text = json.dumps(finite_or_none(config), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def write_json(obj: Any, path: str) -> None:
    r"""Writes :obj:`obj` as strict JSON (a float that is not finite becomes
    :obj:`null`: no :obj:`NaN`/:obj:`Infinity` token), atomically.

    Raises:
        OSError: :obj:`ENOSPC` naming :obj:`path` when the disk is full.
    """
    tmp = f'{path}.tmp'
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with open(tmp, 'w') as f:
            json.dump(finite_or_none(obj), f, indent=1, allow_nan=False)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        full = no_space_error(e, path) if isinstance(e, OSError) else None
        if full is not None:
            raise full from None
        raise


def format_record(record: Dict[str, Any], metric: str) -> str:
    r"""The per-epoch log line: losses, times and the evaluated metrics."""
    parts = [f"epoch {record['epoch']:4d}"]
    if 'losses' in record:
        losses = record['losses']
        terms = ' '.join(f'{k} {v:.4f}' for k, v in losses.items()
                         if k != 'loss' and '/' not in k)
        parts.append(f"loss {losses['loss']:.4f} ({terms})")
        stages: Dict[str, List[str]] = {}
        for key, value in losses.items():  # "<stage>/<term>"
            if '/' in key:
                stage, term = key.split('/', 1)
                stages.setdefault(stage, []).append(f'{term} {value:.4f}')
        parts += [f"{stage} ({' '.join(terms)})"
                  for stage, terms in stages.items()]
        parts.append(f"train {record['train_time']:.2f}s")
    for split in ('val', 'test'):
        if split in record:
            m = record[split]
            ndcg = metric.replace('recall', 'ndcg')
            extra = (f" {ndcg} {m[ndcg]:.4f}"
                     if ndcg in m and ndcg != metric else '')
            parts.append(f"{split} {metric} {m[metric]:.4f}{extra}")
    if 'eval_time' in record:
        parts.append(f"eval {record['eval_time']:.2f}s")
    if record.get('best'):
        parts.append('*')
    return ' | '.join(parts)


def flatten_config(config: Dict[str, Any], prefix: str = '') -> Dict[str, Any]:
    r"""Nested sections as dotted keys, *e.g.* :obj:`"trainer.lr"`."""
    out: Dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten_config(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


def differing_keys(configs: Sequence[Dict[str, Any]]) -> List[str]:
    r"""The dotted keys (see :func:`flatten_config`) whose values are not
    the same in all :obj:`configs` (a key missing from one counts as
    differing), sorted."""
    flat = [flatten_config(c) for c in configs]
    missing = object()
    out = []
    for key in sorted(set().union(*flat)):
        values = [f.get(key, missing) for f in flat]
        if any(v is missing or v != values[0] for v in values):
            out.append(key)
    return out
