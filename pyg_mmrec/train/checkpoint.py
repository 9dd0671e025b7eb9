"""Atomic checkpoints with the full training state (model, optimiser, RNG)."""
import os
import random
import tempfile
from typing import Any, Dict

import numpy as np
import torch


def atomic_save(obj: Any, path: str) -> None:
    r"""Writes :obj:`obj` with :func:`torch.save` to a temporary file in the
    same folder, then renames it over :obj:`path`: a crash never leaves a
    half-written checkpoint."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.tmp-', suffix='.pt')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def rng_state() -> Dict[str, Any]:
    state = {'torch': torch.get_rng_state(), 'numpy': np.random.get_state(),
             'python': random.getstate()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state['torch'])
    np.random.set_state(state['numpy'])
    random.setstate(state['python'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
