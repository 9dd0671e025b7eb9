r"""Dataset loading with a processed cache, by name or folder."""
import hashlib
import logging
import os
import os.path as osp
import re
import shutil
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

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
#: 2: cold users' held-out interactions dropped, ``dropped_cold_*`` counts.
CACHE_VERSION = 2
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


class CacheError(RuntimeError):
    r"""A processed cache file that cannot be used (refused, corrupt or of
    an unexpected content); the dataset is processed again."""


#: Classes the processed cache may hold, beyond tensors and containers.
CACHE_GLOBALS = [HeteroData]


def load_processed(path: str):
    r"""Reads a processed cache file written by
    :meth:`~torch_geometric.data.InMemoryDataset.save` with
    :obj:`torch.load(weights_only=True)`, allowing only
    :obj:`CACHE_GLOBALS`: a pickled payload that names any other global is
    refused, never executed. Returns :obj:`(HeteroData, slices)`.

    Raises:
        CacheError: If the file is refused, corrupt or not such a cache.
    """
    try:
        with torch.serialization.safe_globals(CACHE_GLOBALS), \
                warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)  # pickle protocol
            out = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # refused global, truncated zip, bad magic, ...
        raise CacheError(f"{path}: unusable dataset cache "
                         f"({_load_failure(e)})") from None
    if not (isinstance(out, tuple) and len(out) == 3
            and isinstance(out[0], dict) and out[2] is HeteroData):
        raise CacheError(f"{path}: unusable dataset cache (unexpected "
                         f"content {type(out).__name__})")
    try:
        return HeteroData.from_dict(out[0]), out[1]
    except Exception as e:
        raise CacheError(f"{path}: unusable dataset cache ({e})") from None


def _load_failure(error: Exception) -> str:
    # torch's refusal is a long text; keep the global it names.
    text = str(error)
    match = re.search(r'Unsupported global: GLOBAL ([\w.]+)', text)
    if match is not None:
        return f"refused to load the global {match.group(1)}"
    first = text.strip().splitlines()[0] if text.strip() else ''
    return f"{type(error).__name__}: {first[:200]}"


def cache_location(folder: str, fmt: str, name: str,
                   raw_names: List[str], cache_dir: str,
                   pre_transform: Optional[Callable] = None
                   ) -> Tuple[str, str]:
    r"""The cache prefix of a dataset folder and the processed folder of
    its current raw files: :obj:`<cache_dir>/<name>-<path hash>-<content
    hash>` (see :class:`MMRecDataset`)."""
    stats = []
    for f in raw_names:
        st = os.stat(osp.join(folder, f))
        stats.append(f'{f}:{st.st_size}:{st.st_mtime_ns}')
    content_key = _short_hash('|'.join(
        [f'v{CACHE_VERSION}', fmt, _stable_repr(pre_transform)] + stats))
    prefix = f'{name}-{_short_hash(folder)}-'
    return prefix, osp.join(cache_dir, prefix + content_key)


def is_processed(name_or_path: str, root: Optional[str] = None,
                 cache_dir: Optional[str] = None) -> bool:
    r"""Whether a dataset folder's current raw files are already processed
    (loading it reads the cache instead of the raw files); :obj:`True` for
    the built-in :obj:`"synthetic"` dataset."""
    if name_or_path == 'synthetic':
        return True
    folder = osp.abspath(dataset_folder(name_or_path, root))
    fmt, name, raw_names = readers.raw_files(folder, None)
    _, processed = cache_location(folder, fmt, name, raw_names,
                                  osp.abspath(cache_dir or
                                              default_cache_dir()))
    return osp.isfile(osp.join(processed, 'data.pt'))


class MMRecDataset(InMemoryDataset):
    r"""One dataset folder (MMRec or DiffMM layout, see
    :mod:`pyg_mmrec.data.readers`) with a processed cache;
    :obj:`dataset[0]` is the :class:`~torch_geometric.data.HeteroData`.

    The raw folder is only read, so it may be read-only. The processed file
    lives in :obj:`<cache_dir>/<name>-<path hash>-<content hash>/`, where the
    content hash covers the raw files' names, sizes and modification times
    (and the :obj:`pre_transform`), so a changed file is re-processed; stale
    caches of the same folder are removed.

    The cache is never unpickled with arbitrary globals: it is read with
    :obj:`torch.load(weights_only=True)`, allowing only the PyG classes it
    holds (PyG's own :meth:`load` may retry without the weights-only
    restriction, and its :obj:`pre_transform.pt` check always unpickles in
    full, so neither is used). A
    cache file that is refused or corrupt is treated as stale: a warning is
    logged and the raw files are processed again.

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
        self._prefix, self._processed_dir = cache_location(
            self.folder, self.format, self.name, self._raw_names,
            self.cache_dir, pre_transform)
        super().__init__(self.folder, transform, pre_transform, log=False,
                         force_reload=force_reload)
        try:
            self.load(self.processed_paths[0], data_cls=HeteroData)
        except CacheError as e:
            log.warning("%s; processing %s again", e, self.folder)
            self.process()
            self.load(self.processed_paths[0], data_cls=HeteroData)

    def _process(self) -> None:
        # PyG's version unpickles `pre_transform.pt` without the
        # weights-only restriction (code execution from a crafted cache);
        # the cache key covers the pre_transform, so that check is not
        # needed.
        if self.force_reload or not osp.isfile(self.processed_paths[0]):
            os.makedirs(self.processed_dir, exist_ok=True)
            self.process()

    def load(self, path: str, data_cls: type = HeteroData) -> None:
        r"""Loads the processed cache :obj:`path` safely (see the class
        docstring).

        Raises:
            CacheError: If the file is refused or not a processed dataset.
        """
        data, self.slices = load_processed(path)
        self.data = data

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
    split, density, modalities with their dimensions, the users and items
    without any training interaction, and the cold users whose held-out
    interactions the reader dropped (see
    :func:`~pyg_mmrec.data.build_hetero_data`; they are among the users
    without training interaction, and the split counts exclude what was
    dropped).

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
        'cold_users_dropped': int(getattr(data, 'dropped_cold_users', 0)),
        'held_out_dropped': int(getattr(data, 'dropped_cold_interactions',
                                        0)),
    }
