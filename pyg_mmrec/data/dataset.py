r"""Dataset loading with a processed cache, by name or folder."""
import hashlib
import logging
import os
import os.path as osp
import re
import shutil
from typing import Any, Callable, Dict, List, Optional

import torch
from torch_geometric.data import HeteroData, InMemoryDataset

from . import readers
from .hetero import (
    INTERACTS,
    SPLITS,
    DataFormatError,
    item_features,
    num_items,
    num_users,
)
from .synthetic import make_synthetic

log = logging.getLogger(__name__)

#: Bump when the processed format changes, to invalidate old caches.
CACHE_VERSION = 1
DATA_ENV = 'PYG_MMREC_DATA'
CACHE_ENV = 'PYG_MMREC_CACHE'


def default_root() -> str:
    r"""The default data root: env :obj:`PYG_MMREC_DATA` if set, else
    :obj:`datasets/` (relative to the working directory)."""
    return os.environ.get(DATA_ENV) or 'datasets'


def default_cache_dir() -> str:
    r"""The processed-data cache: env :obj:`PYG_MMREC_CACHE` if set, else
    :obj:`$XDG_CACHE_HOME/pyg_mmrec` (default :obj:`~/.cache/pyg_mmrec`)."""
    if os.environ.get(CACHE_ENV):
        return osp.expanduser(os.environ[CACHE_ENV])
    base = os.environ.get('XDG_CACHE_HOME') or osp.join('~', '.cache')
    return osp.join(osp.expanduser(base), 'pyg_mmrec')


def _stable_repr(obj: Any) -> str:
    return re.sub(' at 0x[0-9a-fA-F]+', '', repr(obj))


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:10]


class MMRecDataset(InMemoryDataset):
    r"""One dataset folder (MMRec or DiffMM layout, see
    :mod:`pyg_mmrec.data.readers`) with a processed cache;
    :obj:`dataset[0]` is the :class:`~torch_geometric.data.HeteroData`.

    The raw folder is only read, so it may be read-only. The processed file
    lives in :obj:`<cache_dir>/<name>-<path hash>-<content hash>/`, where the
    content hash covers the raw files' names, sizes and modification times
    (and the :obj:`pre_transform`), so a changed file is re-processed; stale
    caches of the same folder are removed.

    Args:
        folder (str): The dataset folder.
        name (str, optional): The dataset name (MMRec: the ``.inter`` stem).
            Defaults to the one found in :obj:`folder`.
        cache_dir (str, optional): The cache root. Defaults to
            :func:`default_cache_dir`.
        transform (callable, optional): Applied on every access.
        pre_transform (callable, optional): Applied once before caching.
        force_reload (bool): Re-process even if cached.
            (default: :obj:`False`)
    """
    def __init__(
        self,
        folder: str,
        name: Optional[str] = None,
        cache_dir: Optional[str] = None,
        transform: Optional[Callable] = None,
        pre_transform: Optional[Callable] = None,
        force_reload: bool = False,
    ) -> None:
        self.folder = osp.abspath(osp.expanduser(folder))
        self.format, self.name, self._raw_names = readers.raw_files(
            self.folder, name)
        self.cache_dir = osp.abspath(cache_dir or default_cache_dir())
        path_key = _short_hash(self.folder)
        stats = []
        for f in self._raw_names:
            st = os.stat(osp.join(self.folder, f))
            stats.append(f'{f}:{st.st_size}:{st.st_mtime_ns}')
        content_key = _short_hash('|'.join(
            [f'v{CACHE_VERSION}', self.format, _stable_repr(pre_transform)] +
            stats))
        self._prefix = f'{self.name}-{path_key}-'
        self._processed_dir = osp.join(self.cache_dir,
                                       self._prefix + content_key)
        super().__init__(self.folder, transform, pre_transform, log=False,
                         force_reload=force_reload)
        self.load(self.processed_paths[0], data_cls=HeteroData)

    @property
    def raw_dir(self) -> str:
        return self.folder

    @property
    def processed_dir(self) -> str:
        return self._processed_dir

    @property
    def raw_file_names(self) -> List[str]:
        return list(self._raw_names)

    @property
    def processed_file_names(self) -> List[str]:
        return ['data.pt']

    def download(self) -> None:
        raise FileNotFoundError(
            f"{self.folder}: raw files missing ({', '.join(self._raw_names)})")

    def process(self) -> None:
        log.info("processing %s (%s layout) into %s", self.folder,
                 self.format, self.processed_dir)
        data = getattr(readers, f'read_{self.format}')(self.folder,
                                                       self.name)
        if self.pre_transform is not None:
            data = self.pre_transform(data)
        path = self.processed_paths[0]
        tmp = f'{path}.tmp{os.getpid()}'
        self.save([data], tmp)
        os.replace(tmp, path)  # atomic: concurrent readers never see halves
        self._remove_stale_caches()

    def _remove_stale_caches(self) -> None:
        if not osp.isdir(self.cache_dir):
            return
        current = osp.basename(self.processed_dir)
        for entry in os.listdir(self.cache_dir):
            if entry.startswith(self._prefix) and entry != current:
                log.debug("removing stale cache %s", entry)
                shutil.rmtree(osp.join(self.cache_dir, entry),
                              ignore_errors=True)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.name}, {self.format})'


def dataset_folder(name_or_path: str, root: Optional[str] = None) -> str:
    r"""The folder of a dataset given by name (:obj:`<root>/<name>`, root
    :func:`default_root` by default) or path, as :func:`load_dataset` finds
    it.

    Raises:
        FileNotFoundError: If there is no such folder.
    """
    explicit_path = (os.sep in name_or_path or name_or_path.startswith(
        ('.', '~')) or (os.altsep is not None and os.altsep in name_or_path))
    root = root if root is not None else default_root()
    candidates = []
    if explicit_path:
        candidates.append(osp.expanduser(name_or_path))
    else:
        candidates.append(osp.join(root, name_or_path))
        candidates.append(name_or_path)
    for folder in candidates:
        if osp.isdir(folder):
            return folder
    raise FileNotFoundError(
        f"dataset folder {candidates[0]!r} not found (data root "
        f"{osp.abspath(root)!r}); pass --data-root or set {DATA_ENV} to the "
        f"folder holding the datasets, or give the dataset's path")


def load_dataset(name_or_path: str, root: Optional[str] = None,
                 **synthetic_kwargs: Any) -> HeteroData:
    r"""Loads a dataset as the library's
    :class:`~torch_geometric.data.HeteroData`.

    Args:
        name_or_path (str): :obj:`"synthetic"` (see
            :func:`~pyg_mmrec.data.make_synthetic`), a dataset name resolved
            as :obj:`<root>/<name>`, or a path to a dataset folder.
        root (str, optional): The data root. Defaults to
            :func:`default_root`.
        **synthetic_kwargs: Arguments of
            :func:`~pyg_mmrec.data.make_synthetic`.
    """
    if name_or_path == 'synthetic':
        return make_synthetic(**synthetic_kwargs)
    if synthetic_kwargs:
        raise TypeError(f"keyword arguments {sorted(synthetic_kwargs)} only "
                        f"apply to the 'synthetic' dataset")
    folder = dataset_folder(name_or_path, root)
    try:
        dataset = MMRecDataset(folder)
    except (DataFormatError, FileNotFoundError):
        raise
    except OSError as e:  # e.g. the cache is not writable: read directly
        log.warning("cannot use the dataset cache (%s); reading %s directly",
                    e, folder)
        return readers.read_folder(folder)
    return dataset[0]


def available_datasets(root: Optional[str] = None) -> List[str]:
    r"""Names of the dataset folders under :obj:`root` (either layout), and
    :obj:`"synthetic"`.

    Args:
        root (str, optional): The data root. Defaults to
            :func:`default_root`.
    """
    root = root if root is not None else default_root()
    names = []
    if osp.isdir(root):
        for entry in sorted(os.listdir(root)):
            folder = osp.join(root, entry)
            if not osp.isdir(folder):
                continue
            try:
                readers.detect_format(folder)
            except (DataFormatError, OSError):
                continue
            names.append(entry)
    return names + ['synthetic']


def dataset_statistics(data: HeteroData) -> Dict[str, Any]:
    r"""Summary statistics of a dataset: users, items, interactions per
    split, density, modalities with their dimensions, and the users and
    items without any training interaction.

    Args:
        data (HeteroData): The dataset.
    """
    store = data[INTERACTS]
    n_users, n_items = num_users(data), num_items(data)
    counts = {s: int(store[f'{s}_mask'].sum()) for s in SPLITS}
    total = int(store.edge_index.size(1))
    train = store.edge_index[:, store.train_mask]
    user_deg = torch.bincount(train[0], minlength=n_users)
    item_deg = torch.bincount(train[1], minlength=n_items)
    return {
        'name': getattr(data, 'name', None),
        'users': n_users,
        'items': n_items,
        'interactions': total,
        **counts,
        'density': total / max(1, n_users * n_items),
        'modalities': {m: int(x.size(1)) for m, x in
                       item_features(data).items()},
        'users_without_train': int((user_deg == 0).sum()),
        'items_without_train': int((item_deg == 0).sum()),
    }
