r"""Keeping the tensors of idle model parts in a file instead of memory."""
import itertools
import os
import tempfile
import weakref
from typing import Iterable, List, Optional

import torch
from torch import Tensor


def _remove(path: str) -> None:
    for p in (path, path + '.tmp'):
        if os.path.exists(p):
            os.remove(p)


class DiskOffload:
    r"""Moves the parameters and buffers of :obj:`modules` and the states of
    :obj:`optimizers` to a file while they are idle, and back.

    For a model whose parts are used in turns (MDMNS's denoisers are trained
    and run once per epoch, then idle during every recommender batch), this
    bounds the peak memory by the part in use instead of the sum of all
    parts. :meth:`offload` writes every tensor to one file (atomically) and
    frees its memory, keeping the tensor objects themselves (modules and
    optimisers keep their references; the tensors are empty meanwhile);
    :meth:`restore` reads the values back, bit for bit, onto the tensors'
    devices. The file is removed with this object. Restore before
    replacing any of the tensors (e.g. by
    :meth:`~torch.nn.Module.load_state_dict`).

    Args:
        modules (Iterable[torch.nn.Module]): The modules.
        optimizers (Iterable[torch.optim.Optimizer]): Optimisers of their
            parameters; their states are offloaded as well.
        directory (str): Folder of the file. It should be on a disk: on a
            :obj:`tmpfs` (often :obj:`/tmp`, :obj:`/dev/shm`), the file
            itself takes memory.
    """
    def __init__(self, modules: Iterable[torch.nn.Module],
                 optimizers: Iterable[torch.optim.Optimizer], directory: str):
        self.modules = list(modules)
        self.optimizers = list(optimizers)
        try:
            os.makedirs(directory, exist_ok=True)
            fd, self.path = tempfile.mkstemp(prefix='offload-', suffix='.pt',
                                             dir=directory)
        except OSError as e:
            raise ValueError(f"cannot create an offload file in "
                             f"'{directory}': {e}") from e
        os.close(fd)
        weakref.finalize(self, _remove, self.path)
        self._offloaded: Optional[List[Tensor]] = None

    @property
    def is_offloaded(self) -> bool:
        r"""Whether the tensors are in the file (and empty in memory)."""
        return self._offloaded is not None

    def tensors(self) -> List[Tensor]:
        r"""The tensors handled: parameters and buffers, then optimiser
        states."""
        out = [t for m in self.modules
               for t in itertools.chain(m.parameters(), m.buffers())]
        for opt in self.optimizers:
            for state in opt.state.values():
                out.extend(v for v in state.values() if isinstance(v, Tensor))
        return out

    def offload(self) -> None:
        r"""Writes the tensors to the file and frees their memory (nothing
        happens if they are already offloaded)."""
        if self.is_offloaded:
            return
        tensors = self.tensors()
        tmp = self.path + '.tmp'
        torch.save([t.detach() for t in tensors], tmp)
        os.replace(tmp, self.path)
        for t in tensors:
            t.data = t.new_empty(0)
        self._offloaded = tensors

    def restore(self) -> None:
        r"""Reads the tensors back from the file (nothing happens if they are
        in memory)."""
        if not self.is_offloaded:
            return
        values = torch.load(self.path, map_location='cpu', weights_only=True)
        for t, value in zip(self._offloaded, values):
            t.data = value.to(t.device)
        self._offloaded = None

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.path!r}, '
                f'offloaded={self.is_offloaded})')
