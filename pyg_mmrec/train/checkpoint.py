r"""Checkpoints: atomic writes, loads that never execute code, the RNG
state as plain tensors, and the lock that keeps two runs out of one folder.

Every checkpoint holds tensors and plain Python data only (dicts, lists,
tuples, strings, numbers), so it loads with
:obj:`torch.load(weights_only=True)`: a crafted file cannot run code, it
is refused with a message naming it."""
import errno
import glob
import logging
import os
import pickle
import random
import re
import shutil
import tempfile
import zipfile
from typing import Any, Dict, Iterable, Optional

import numpy as np
import torch

log = logging.getLogger(__name__)

#: The prefix of :func:`atomic_save`'s temporary files.
TEMP_PREFIX = '.tmp-'


def no_space_error(error: BaseException, path: str) -> Optional[OSError]:
    r"""An :obj:`OSError` saying "no space left on device" and where, when
    :obj:`error` is a full disk (an :obj:`ENOSPC` :obj:`OSError`, or
    PyTorch's wrapped write failure with no free space left), else
    :obj:`None`."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        full = True
    else:
        try:
            full = shutil.disk_usage(os.path.dirname(
                os.path.abspath(path))).free < 2**20
        except OSError:
            full = False
        full = full and 'write' in str(error).lower()
    if not full:
        return None
    return OSError(errno.ENOSPC, 'no space left on device', path)


def atomic_save(obj: Any, path: str) -> None:
    r"""Writes :obj:`obj` with :func:`torch.save` to a temporary file in the
    same folder, then renames it over :obj:`path`: a crash never leaves a
    half-written checkpoint (a kill leaves at most a temporary file, which
    :func:`remove_stale_temporaries` removes at the next start).

    Raises:
        OSError: :obj:`ENOSPC` naming :obj:`path` when the disk is full.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix='.pt')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        full = no_space_error(e, path) if isinstance(e, Exception) else None
        if full is not None:
            raise full from None
        raise


def remove_stale_temporaries(folder: str) -> int:
    r"""Removes the temporary files a killed :func:`atomic_save` (or
    :func:`~pyg_mmrec.train.records.write_json`) left in :obj:`folder`;
    call it only while holding the folder's :class:`RunLock`. Returns how
    many were removed."""
    stale = (glob.glob(os.path.join(folder, TEMP_PREFIX + '*'))
             + glob.glob(os.path.join(folder, '*.json.tmp')))
    for path in stale:
        os.remove(path)
    if stale:
        log.info("removed %d temporary file(s) of an interrupted write in "
                 "%s", len(stale), folder)
    return len(stale)


def load_checkpoint(path: str, map_location: Any = 'cpu',
                    keys: Iterable[str] = ()) -> Any:
    r"""Loads a checkpoint with :obj:`torch.load(weights_only=True)`: only
    tensors and plain data, never code.

    Args:
        path (str): The file.
        map_location: Where tensors go. (default: :obj:`"cpu"`)
        keys (Iterable[str]): Keys the loaded mapping must hold.

    Raises:
        ValueError: Naming :obj:`path`, if the file is empty, truncated or
            corrupt, holds anything but tensors and plain data (a crafted
            or foreign file: refused without running it), or lacks one of
            :obj:`keys`.
    """
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the checkpoint is empty (0 bytes): "
                         f"corrupt; delete it (or the run folder)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r'GLOBAL (\S+)', str(e))
        if found is None:  # not a pickle of plain data at all
            raise ValueError(f"{path}: the checkpoint is corrupt (not a "
                             f"file torch.save wrote)") from None
        raise ValueError(
            f"{path}: refused to load: the file holds {found.group(1)}, not "
            f"only tensors and plain data, and could run code when loaded "
            f"(a crafted file, or not a checkpoint this library wrote); it "
            f"was not executed") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError,
            ValueError, KeyError, IndexError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        reason = str(e).strip().splitlines()[0] if str(e).strip() else \
            type(e).__name__
        raise ValueError(f"{path}: the checkpoint is corrupt or truncated "
                         f"({reason[:200]})") from None
    missing = [k for k in keys
               if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path}: not a complete training checkpoint: "
                         f"missing {', '.join(map(repr, missing))}")
    return state


def rng_state() -> Dict[str, Any]:
    r"""The state of every random number generator, as tensors and plain
    data (see :func:`load_checkpoint`)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {'torch': torch.get_rng_state(),
             'numpy': {'name': name, 'keys': torch.from_numpy(
                 keys.astype(np.int64)), 'pos': int(pos),
                 'has_gauss': int(has_gauss),
                 'cached_gaussian': float(cached)},
             'python': random.getstate()}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    r"""Restores :func:`rng_state`."""
    torch.set_rng_state(state['torch'])
    npy = state['numpy']
    np.random.set_state((npy['name'], npy['keys'].numpy().astype(np.uint32),
                         npy['pos'], npy['has_gauss'], npy['cached_gaussian']))
    random.setstate(state['python'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class RunLock:
    r"""An exclusive lock on a run folder: the file :obj:`<folder>/.lock`
    holding the owner's PID, created atomically (:obj:`O_EXCL`). A second
    run on the same folder is refused with a message naming the holder; a
    lock whose process is gone (a killed run) is taken over.

    Use as a context manager around the run.

    Args:
        folder (str): The run folder (created if needed).
    """
    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.path = os.path.join(folder, '.lock')
        self.held = False

    def acquire(self) -> 'RunLock':
        os.makedirs(self.folder, exist_ok=True)
        # The PID is written to a private file first and hard-linked as the
        # lock: the lock appears atomically, with its content.
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix='.lock-')
        with os.fdopen(fd, 'w') as f:
            f.write(str(os.getpid()))
        try:
            for _ in range(2):
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    holder = self._holder()
                    if holder is None or _pid_alive(holder):
                        raise ValueError(
                            f"{self.folder}: another run (PID {holder}) is "
                            f"writing to this folder; wait for it, or choose "
                            f"another --output-dir (a lock left by a crash: "
                            f"delete {self.path})") from None
                    log.info("%s: taking over the lock of a run that is "
                             "gone (PID %s)", self.folder, holder)
                    try:
                        os.remove(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                self.held = True
                return self
        finally:
            os.remove(tmp)
        raise ValueError(f"{self.folder}: cannot take the run lock "
                         f"{self.path}")

    def _holder(self) -> Optional[int]:
        try:
            with open(self.path) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if pid > 0 else None

    def release(self) -> None:
        if self.held:
            self.held = False
            if self._holder() == os.getpid():
                os.remove(self.path)

    def __enter__(self) -> 'RunLock':
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
