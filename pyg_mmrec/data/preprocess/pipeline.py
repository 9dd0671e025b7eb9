r"""Raw logs to the MMRec layout: read (streaming), keep ratings
:math:`\geq r_{\min}`, collapse duplicate pairs to the earliest, iterative
k-core, contiguous re-indexing in order of first appearance (MMRec's
convention, ``models.md`` section 1.1), per-user split, then write

* ``<name>.inter``: tab-separated, header
  ``userID itemID rating timestamp x_label`` (``x_label`` 0/1/2 =
  train/validation/test), readable by :func:`pyg_mmrec.data.load_dataset`;
* ``u_id_mapping.csv`` / ``i_id_mapping.csv``: tab-separated, headers
  ``raw_id userID`` / ``raw_id itemID``, rows in new-id order;
* ``stats.json``; optionally ``text_feat.npy``, ``image_feat.npy`` and
  ``<modality>_feat.npy`` of precomputed features (float32, row :math:`i`
  = new item id :math:`i`).

The folder is written atomically (see
:mod:`pyg_mmrec.data.preprocess.output`): a failure leaves no partial
dataset behind.
"""
import json
import logging
import os.path as osp
import re
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..hetero import SPLITS, DataFormatError
from ..textio import dataset_lines
from .features import image_features, read_item_features, text_features
from .filtering import (
    first_of_duplicates,
    k_core,
    keep_min_rating,
    reindex_by_first_appearance,
)
from .movielens import read_movielens, read_movielens_titles
from .output import atomic_output_dir, check_output_dir
from .raw import (
    FORMATS,
    RawInteractions,
    numbered_lines,
    read_amazon,
    read_amazon_meta,
    read_delimited,
    read_delimited_titles,
)
from .split import split_interactions

log = logging.getLogger(__name__)
INTER_HEADER = ('userID', 'itemID', 'rating', 'timestamp', 'x_label')
_WRITE_CHUNK = 50_000
#: MMRec's id maps in a dataset folder (raw id, then the id the dataset
#: uses, tab-separated).
ID_MAPS = {'user': 'u_id_mapping.csv', 'item': 'i_id_mapping.csv'}
#: The file of the items' metadata texts (one row per item, its dataset id
#: and its text, title first, tab-separated), written when the metadata is
#: read.
ITEM_META = 'item_meta.csv'


def write_id_map(path: str, raw_ids: List[str], column: str) -> None:
    r"""Writes :obj:`raw_id\t<column>` rows, new id :obj:`i` on row
    :obj:`i`."""
    for raw in raw_ids:
        if '\t' in raw or '\n' in raw:
            raise DataFormatError(f"{path}: raw id {raw!r} contains a tab or "
                                  f"newline")
    with open(path, 'w', encoding='utf-8') as f:
        f.write(f'raw_id\t{column}\n')
        f.writelines(f'{raw}\t{i}\n' for i, raw in enumerate(raw_ids))


def read_id_mapping(path: str) -> Dict[int, str]:
    r"""Reads an id map (MMRec's :obj:`u_id_mapping.csv` /
    :obj:`i_id_mapping.csv`): per line the original id, then the dataset's
    integer id, tab-separated (or comma-separated); a header line (whatever
    its column names) is skipped. Returns dataset id -> original id.

    Raises:
        DataFormatError: If the file is gzip-compressed or not UTF-8, a line
            is malformed or an id appears twice.
    """
    out: Dict[int, str] = {}
    for number, line in dataset_lines(path):
        line = line.rstrip('\r\n')
        if not line.strip():
            continue
        fields = line.split('\t') if '\t' in line else line.split(',')
        if len(fields) < 2:
            raise DataFormatError(
                f"{path}:{number}: expected 'raw id<TAB>id', got {line!r}")
        raw, new = fields[0].strip(), fields[1].strip()
        try:
            new_id = int(new)
        except ValueError:
            if number == 1 and not out:  # the header
                continue
            raise DataFormatError(f"{path}:{number}: the id {new!r} is not an "
                             f"integer") from None
        if new_id in out:
            raise DataFormatError(
                f"{path}:{number}: id {new_id} appears twice")
        out[new_id] = raw
    return out


def write_inter(path: str, user: np.ndarray, item: np.ndarray,
                rating: np.ndarray, time: np.ndarray,
                label: np.ndarray) -> None:
    r"""Writes an MMRec ``.inter`` file, rows sorted by user, split and
    time."""
    order = np.lexsort((time, label, user))
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\t'.join(INTER_HEADER) + '\n')
        for s in range(0, len(order), _WRITE_CHUNK):
            idx = order[s:s + _WRITE_CHUNK]
            f.writelines(
                f'{u}\t{i}\t{r:g}\t{t}\t{x}\n' for u, i, r, t, x in zip(
                    user[idx].tolist(), item[idx].tolist(),
                    rating[idx].tolist(), time[idx].tolist(),
                    label[idx].tolist()))


def read_raw(fmt: str, path: str, progress: bool = False,
             **csv_kwargs) -> RawInteractions:
    r"""Reads a raw log of format :obj:`fmt` (one of :obj:`FORMATS`);
    :obj:`csv_kwargs` are :func:`read_delimited`'s column arguments."""
    if fmt == 'amazon':
        return read_amazon(path, progress)
    if fmt == 'movielens':
        return read_movielens(path, progress)
    if fmt == 'csv':
        return read_delimited(path, progress=progress, **csv_kwargs)
    raise ValueError(f"unknown raw format {fmt!r}; expected one of {FORMATS}")


def item_texts(fmt: str, input_path: str, meta: Optional[str],
               raw_item_ids: List[str], progress: bool = False) -> List[str]:
    r"""The text of each item (in new-id order) from the metadata of a raw
    format; only the kept items' records are retained.

    Args:
        fmt (str): :obj:`"amazon"` (``meta_*.json(.gz)`` via :obj:`meta`),
            :obj:`"movielens"` (the item file beside the ratings, or
            :obj:`meta`) or :obj:`"csv"` (:obj:`meta`: a tab-separated file
            with a header whose first column is the raw item id and whose
            other columns are joined).
        input_path (str): The raw interaction file or folder.
        meta (str, optional): The metadata file.
        raw_item_ids (List[str]): Raw id of each new item id.
        progress (bool): Show a progress bar. (default: :obj:`False`)
    """
    wanted = set(raw_item_ids)
    if fmt == 'movielens':
        texts = read_movielens_titles(input_path, wanted, meta)
    elif meta is None:
        raise ValueError(f"text features of the {fmt!r} format need --meta "
                         f"(the item metadata file)")
    elif fmt == 'amazon':
        texts = read_amazon_meta(meta, wanted, progress)
    else:
        lines = numbered_lines(meta)
        try:
            width = len(next(lines, (1, ''))[1].split('\t'))
        finally:
            lines.close()
        texts = read_delimited_titles(meta, 0, list(range(1, width)), '\t',
                                      wanted, skip_header=True)
    return [texts.get(i, '') for i in raw_item_ids]


def _metadata_texts(fmt: str, input_path: str, meta: Optional[str],
                    raw_items: List[str], required: bool,
                    progress: bool) -> Optional[List[str]]:
    # The items' texts when they are needed (text features) or at hand
    # (a --meta file, MovieLens's item file beside the ratings, if there).
    try:
        return item_texts(fmt, input_path, meta, raw_items, progress)
    except FileNotFoundError:
        if required or meta is not None:
            raise
        return None


def write_item_meta(path: str, texts: List[str]) -> None:
    r"""Writes :data:`ITEM_META`: a :obj:`itemID\ttitle` header, then item
    :obj:`i`'s text on row :obj:`i` (tabs and newlines as spaces)."""
    with open(path, 'w', encoding='utf-8') as f:
        f.write('itemID\ttitle\n')
        f.writelines(f"{i}\t{' '.join(t.split())}\n"
                     for i, t in enumerate(texts))


def read_item_meta(path: str) -> Dict[int, str]:
    r"""Reads :data:`ITEM_META`: dataset item id -> its text."""
    out: Dict[int, str] = {}
    for number, line in dataset_lines(path):
        fields = line.rstrip('\r\n').split('\t', 1)
        if number == 1 or not fields[0].strip():
            continue
        try:
            out[int(fields[0])] = fields[1] if len(fields) > 1 else ''
        except ValueError:
            raise DataFormatError(f"{path}:{number}: the item id "
                                  f"{fields[0]!r} is not an integer") from None
    return out


def _select(arrays: Tuple[np.ndarray, ...], index: np.ndarray
            ) -> Tuple[np.ndarray, ...]:
    # Rows of each array by mask or ascending indices; no copy when all kept.
    n = len(arrays[0])
    if (index.dtype == bool and index.all()) or (
            index.dtype != bool and len(index) == n):
        return arrays
    return tuple(a[index] for a in arrays)


def preprocess(
    fmt: str,
    input_path: str,
    output_dir: str,
    name: Optional[str] = None,
    meta: Optional[str] = None,
    min_rating: float = 0.0,
    user_core: int = 5,
    item_core: int = 5,
    split: str = 'random',
    seed: int = 0,
    text: bool = False,
    text_model: Optional[str] = None,
    images: Optional[str] = None,
    image_backbone: str = 'resnet50',
    image_weights: Optional[str] = None,
    item_features: Optional[Dict[str, str]] = None,
    progress: bool = False,
    **csv_kwargs: Any,
) -> Dict[str, Any]:
    r"""Turns a raw interaction log into an MMRec dataset folder (see the
    module docstring) and returns its statistics (also in ``stats.json``).

    Args:
        fmt (str): :obj:`"amazon"`, :obj:`"movielens"` or :obj:`"csv"` (see
            :mod:`pyg_mmrec.data.preprocess.raw`).
        input_path (str): The raw file (MovieLens: file or folder).
        output_dir (str): The dataset folder to write, atomically: an
            existing file there is refused before any work; an existing
            folder (holding only files that preprocessing writes) is
            replaced once the new one is complete (see
            :mod:`~pyg_mmrec.data.preprocess.output`).
        name (str, optional): Dataset name (``<name>.inter``). Defaults to
            the output folder's name.
        meta (str, optional): Item metadata (see :obj:`item_texts`): the
            text features, and the items' texts in :data:`ITEM_META` (also
            written for MovieLens from its item file, when present).
        min_rating (float): Keep interactions with rating
            :math:`\geq` this. (default: :obj:`0`, all)
        user_core, item_core (int): k-core thresholds. (default: :obj:`5`)
        split (str): :obj:`"random"`, :obj:`"chrono"` or :obj:`"loo"` (see
            :func:`~pyg_mmrec.data.preprocess.split_interactions`).
        seed (int): Seed of the random split. (default: :obj:`0`)
        text (bool): Write ``text_feat.npy``. (default: :obj:`False`)
        text_model (str, optional): Local sentence-transformers folder.
            Defaults to the bundled all-MiniLM-L6-v2.
        images (str, optional): Folder of ``<raw item id>.jpg|png``; writes
            ``image_feat.npy``.
        image_backbone (str): torchvision model. (default: :obj:`"resnet50"`)
        image_weights (str, optional): The backbone's state dict file.
        item_features (dict, optional): Precomputed features by modality,
            :obj:`{modality: file}` (see :func:`read_item_features`);
            writes ``<modality>_feat.npy``.
        progress (bool): Progress bars. (default: :obj:`False`)
        **csv_kwargs: Column arguments of the :obj:`"csv"` format
            (:obj:`user_col`, :obj:`item_col`, :obj:`rating_col`,
            :obj:`time_col`, :obj:`delimiter`).
    """
    item_features = _checked_item_features(item_features, text, images)
    _check_name(name)
    check_output_dir(output_dir, [input_path, meta, images, image_weights,
                                  text_model, *item_features.values()])
    raw = read_raw(fmt, input_path, progress=progress, **csv_kwargs)
    source = raw.source
    arrays = (raw.user, raw.item, raw.rating, raw.time)
    raw.user = raw.item = raw.rating = raw.time = None  # owned by arrays
    keep = keep_min_rating(arrays[2], min_rating)
    after_threshold = int(keep.sum())
    if after_threshold == 0:
        raise DataFormatError(f"{source}: no interactions with rating >= "
                              f"{min_rating:g}")
    arrays = _select(arrays, keep)
    first = first_of_duplicates(arrays[0], arrays[1], arrays[3])
    duplicates = len(arrays[0]) - len(first)
    arrays = _select(arrays, first)
    core, rounds = k_core(arrays[0], arrays[1], user_core, item_core)
    if not core.any():
        raise DataFormatError(
            f"{source}: no interactions left after {user_core}-core (users) /"
            f" {item_core}-core (items) filtering")
    user, item, rating, time = _select(arrays, core)
    del arrays, keep, first, core
    user, user_old = reindex_by_first_appearance(user)
    item, item_old = reindex_by_first_appearance(item)
    label = split_interactions(user, time, split, seed)
    counts = {s: int((label == c).sum()) for c, s in enumerate(SPLITS)}
    empty = [s for s, c in counts.items() if c == 0]
    if empty:
        raise DataFormatError(
            f"{source}: the {' and '.join(empty)} split(s) would be empty "
            f"with the {split!r} split of {len(user)} interactions")

    name = name or osp.basename(osp.normpath(osp.abspath(output_dir)))
    raw_users = [raw.user_ids[i] for i in user_old.tolist()]
    raw_items = [raw.item_ids[i] for i in item_old.tolist()]
    raw_lines = raw.lines
    del raw
    n_users, n_items = len(raw_users), len(raw_items)
    stats: Dict[str, Any] = {
        'name': name, 'source': source, 'format': fmt,
        'users': n_users, 'items': n_items, 'interactions': len(user),
        **counts, 'density': len(user) / (n_users * n_items),
        'raw_lines': raw_lines, 'kept_after_threshold': after_threshold,
        'duplicates_removed': duplicates, 'kept_after_k_core': len(user),
        'k_core_rounds': rounds, 'min_rating': min_rating,
        'user_core': user_core, 'item_core': item_core, 'split': split,
        'seed': seed, 'features': {},
    }
    with atomic_output_dir(output_dir) as folder:
        write_inter(osp.join(folder, f'{name}.inter'), user, item, rating,
                    time, label)
        write_id_map(osp.join(folder, ID_MAPS['user']), raw_users, 'userID')
        write_id_map(osp.join(folder, ID_MAPS['item']), raw_items, 'itemID')
        texts = None
        if text or meta is not None or fmt == 'movielens':
            texts = _metadata_texts(fmt, input_path, meta, raw_items, text,
                                    progress)
        if texts is not None:
            write_item_meta(osp.join(folder, ITEM_META), texts)
        if text:
            feat = text_features(texts, text_model, progress=progress)
            np.save(osp.join(folder, 'text_feat.npy'), feat)
            stats['features']['text'] = {
                'dim': int(feat.shape[1]),
                'items_without_text': sum(not t.strip() for t in texts)}
        if images is not None:
            feat = image_features(raw_items, images, image_backbone,
                                  image_weights, progress=progress)
            np.save(osp.join(folder, 'image_feat.npy'), feat)
            stats['features']['image'] = {'dim': int(feat.shape[1]),
                                          'backbone': image_backbone}
        for modality, path in item_features.items():
            feat = read_item_features(path, raw_items, progress=progress)
            np.save(osp.join(folder, f'{modality}_feat.npy'), feat)
            stats['features'][modality] = {'dim': int(feat.shape[1]),
                                           'file': path}
        with open(osp.join(folder, 'stats.json'), 'w') as f:
            json.dump(stats, f, indent=1)
    # The command line prints the summary; here it is for the debug log.
    log.debug("%s: %d users, %d items, %d interactions (train %d, val %d, "
              "test %d) written to %s", name, n_users, n_items, len(user),
              counts['train'], counts['val'], counts['test'], output_dir)
    return stats


def _check_name(name: Optional[str]) -> None:
    r"""Refuses a dataset name that is not a plain file name: the
    ``<name>.inter`` file must land inside the output folder."""
    if name is not None and (not name.strip() or name in ('.', '..') or
                             osp.basename(name) != name or
                             (osp.altsep or '/') in name):
        raise ValueError(f"name {name!r}: must be a file name (no folder), "
                         f"the stem of '<name>.inter'")


def _checked_item_features(item_features: Optional[Dict[str, str]],
                           text: bool, images: Optional[str]
                           ) -> Dict[str, str]:
    r"""Validates :func:`preprocess`'s :obj:`item_features` (modality names,
    files present, no clash with the computed text/image features)."""
    item_features = dict(item_features or {})
    clash = {'text'} & set(item_features) if text else set()
    clash |= {'image'} & set(item_features) if images is not None else set()
    for modality, path in item_features.items():
        if not re.fullmatch(r'\w+', modality):
            raise ValueError(f"item_features: modality name {modality!r} "
                             f"must be a word (letters, digits, '_')")
        if not osp.isfile(path):
            raise FileNotFoundError(f"{path}: no such feature file (item "
                                    f"features {modality!r})")
    if clash:
        raise ValueError(f"item_features: {sorted(clash)} would overwrite "
                         f"the features computed by the text/image options")
    return item_features
