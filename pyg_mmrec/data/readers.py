r"""Readers for the two on-disk layouts of multimodal recommendation data.

* **MMRec**: ``<name>.inter`` (tab-separated with a header; columns
  ``userID``, ``itemID`` and ``x_label`` with :obj:`0` train, :obj:`1`
  validation, :obj:`2` test) plus optional ``<modality>_feat.npy`` files.
* **DiffMM**: ``trnMat.pkl``, ``valMat.pkl``, ``tstMat.pkl`` (pickled
  :class:`scipy.sparse.coo_matrix` of shape :obj:`[num_users, num_items]`,
  unpickled by :mod:`pyg_mmrec.data.diffmm`) plus ``<modality>_feat.npy``
  files.

Both return the library's :class:`~torch_geometric.data.HeteroData` (see
:mod:`pyg_mmrec.data.hetero`) and raise :class:`DataFormatError` with a
message that starts with the offending file's path.
"""
import logging
import os
import os.path as osp
import re
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np
from torch_geometric.data import HeteroData

from .diffmm import DIFFMM_FILES, read_diffmm_interactions
from .hetero import DataFormatError, build_hetero_data
from .textio import check_plain_text, dataset_lines, first_undecodable_line

log = logging.getLogger(__name__)

MMREC_COLUMNS = ('userID', 'itemID', 'x_label')
_FEATURE_FILE = re.compile(r'^(\w+)_feat\.npy$')


# Layout detection ############################################################

def _inter_files(folder: str) -> List[str]:
    return sorted(f for f in os.listdir(folder)
                  if f.endswith('.inter') and osp.isfile(osp.join(folder, f)))


def detect_format(folder: str) -> str:
    r"""Returns the layout of a dataset folder, :obj:`"mmrec"` or
    :obj:`"diffmm"`.

    Args:
        folder (str): The dataset folder.
    """
    if not osp.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such dataset folder")
    has_mmrec = len(_inter_files(folder)) > 0
    has_diffmm = osp.isfile(osp.join(folder, DIFFMM_FILES[0]))
    if has_mmrec and has_diffmm:
        log.warning("%s holds both an MMRec '.inter' file and DiffMM "
                    "'*Mat.pkl' files; reading the MMRec one", folder)
    if has_mmrec:
        return 'mmrec'
    if has_diffmm:
        return 'diffmm'
    found = sorted(os.listdir(folder))
    raise DataFormatError(
        f"{folder}: not a dataset folder; expected either an MMRec layout "
        f"('<name>.inter' with columns {', '.join(MMREC_COLUMNS)}, optional "
        f"'<modality>_feat.npy') or a DiffMM layout "
        f"({', '.join(DIFFMM_FILES)}, '<modality>_feat.npy'); found "
        f"{found[:10] if found else 'an empty folder'}")


def _feature_files(folder: str) -> Dict[str, str]:
    out = {}
    for f in sorted(os.listdir(folder)):
        match = _FEATURE_FILE.match(f)
        if match is not None and osp.isfile(osp.join(folder, f)):
            out[match.group(1)] = f
    return out


def _mmrec_inter_file(folder: str, name: Optional[str]) -> str:
    r"""The ``.inter`` file to read: ``<name>.inter`` if :obj:`name` is
    given, else the only one, else the one named after the folder (logging
    a warning that names the ignored ones); several others are refused."""
    if name is not None:
        path = osp.join(folder, f'{name}.inter')
        if not osp.isfile(path):
            raise FileNotFoundError(f"{path}: no such interaction file")
        return f'{name}.inter'
    files = _inter_files(folder)
    if len(files) == 1:
        return files[0]
    if not files:
        raise DataFormatError(f"{folder}: no '<name>.inter' file")
    own = f'{osp.basename(osp.normpath(osp.abspath(folder)))}.inter'
    if own in files:
        log.warning("%s: several '.inter' files; reading %s (named after the "
                    "folder) and ignoring %s", folder, own,
                    ', '.join(f for f in files if f != own))
        return own
    raise DataFormatError(
        f"{folder}: several '.inter' files ({', '.join(files)}) and none is "
        f"named after the folder; keep only one in the folder, or rename the "
        f"one to read to '{own}' (in Python: pass name=<its stem>)")


def raw_files(folder: str, name: Optional[str] = None
              ) -> Tuple[str, str, List[str]]:
    r"""Returns the layout, dataset name and raw file names (relative to
    :obj:`folder`) that :func:`read_mmrec` / :func:`read_diffmm` would read.

    Args:
        folder (str): The dataset folder.
        name (str, optional): The dataset name (MMRec: the ``.inter`` file's
            stem). Defaults to the one found in :obj:`folder`.
    """
    fmt = detect_format(folder)
    features = list(_feature_files(folder).values())
    if fmt == 'mmrec':
        inter = _mmrec_inter_file(folder, name)
        return fmt, inter[:-len('.inter')], [inter] + features
    missing = [f for f in DIFFMM_FILES if not osp.isfile(osp.join(folder, f))]
    if missing:
        raise DataFormatError(
            f"{folder}: the DiffMM layout needs {', '.join(DIFFMM_FILES)}; "
            f"missing {', '.join(missing)}")
    name = name or osp.basename(osp.normpath(osp.abspath(folder)))
    return fmt, name, list(DIFFMM_FILES) + features


# Features ####################################################################

def _read_features(folder: str) -> Tuple[Dict[str, np.ndarray],
                                         Dict[str, str]]:
    features, sources = {}, {}
    for modality, f in _feature_files(folder).items():
        path = osp.join(folder, f)
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as e:  # malformed header, pickled objects, ...
            raise DataFormatError(
                f"{path}: not a readable .npy array ({e})") from None
        if not isinstance(arr, np.ndarray):
            raise DataFormatError(f"{path}: not a single .npy array")
        if arr.ndim != 2 or arr.shape[1] == 0:
            raise DataFormatError(
                f"{path}: expected a 2-d [num_items, dim] array with dim >= 1,"
                f" got shape {tuple(arr.shape)}")
        features[modality], sources[modality] = arr, path
    return features, sources


# MMRec #######################################################################

def _split_header(line: str) -> List[str]:
    return [c.strip() for c in line.rstrip('\r\n').split('\t')]


def _is_int(value: str) -> bool:
    return re.fullmatch(r'\s*[+-]?\d+\s*', value) is not None


_INT64 = np.iinfo(np.int64)


def _locate_bad_value(path: str, cols: List[int], names: List[str],
                      error: Exception) -> str:
    # Slow scan, only on the error path, to name the first offending line.
    for lineno, line in dataset_lines(path):
        if lineno == 1 or not line.strip():
            continue
        fields = line.rstrip('\r\n').split('\t')
        for c, n in zip(cols, names):
            if c >= len(fields):
                return (f"line {lineno} has {len(fields)} column(s), "
                        f"column '{n}' is missing")
            if not _is_int(fields[c]):
                return (f"line {lineno}, column '{n}': {fields[c]!r} is "
                        f"not an integer")
            if not _INT64.min <= int(fields[c]) <= _INT64.max:
                return (f"line {lineno}, column '{n}': {fields[c].strip()} "
                        f"is out of the 64-bit integer range")
    return f'unparsable value ({error})'


def _read_header(path: str) -> str:
    r"""The first line of a plain UTF-8 ``.inter`` file (see
    :func:`~pyg_mmrec.data.textio.dataset_lines`)."""
    lines = dataset_lines(path)
    try:
        return next(lines, (1, ''))[1]
    finally:
        lines.close()


def _read_table(path: str, cols: List[int]) -> np.ndarray:
    r"""The integer columns :obj:`cols` of the rows of an ``.inter`` file
    (after its header), as an :obj:`[N, len(cols)]` array."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)  # "no data"
            return np.loadtxt(path, delimiter='\t', skiprows=1,
                              dtype=np.int64, usecols=cols, comments=None,
                              ndmin=2, encoding='utf-8-sig')
    except UnicodeDecodeError:
        first_undecodable_line(path)  # raises, naming the line
        raise DataFormatError(f"{path}: not UTF-8 text") from None
    except ValueError as e:
        problem = _locate_bad_value(path, cols, list(MMREC_COLUMNS), e)
        raise DataFormatError(f"{path}: {problem}") from None


def read_mmrec(folder: str, name: Optional[str] = None) -> HeteroData:
    r"""Reads a dataset in MMRec's layout.

    The number of users is :obj:`max(userID) + 1` and the number of items
    :obj:`max(itemID) + 1`, both over all splits; when feature files exist,
    their row count must equal the number of items. Ids are expected to be
    contiguous from :obj:`0` (as MMRec's preprocessing writes them): a few
    unused ids are logged, ids far beyond their count (such as raw ids of
    :obj:`2**40`) are refused (see
    :func:`~pyg_mmrec.data.build_hetero_data`). The file must be plain
    UTF-8 text (a byte-order mark is accepted; a gzipped file is refused).

    Args:
        folder (str): The dataset folder.
        name (str, optional): The dataset name: reads ``<name>.inter``.
            Defaults to the only ``.inter`` file in :obj:`folder` (or the one
            named after the folder).
    """
    inter = _mmrec_inter_file(folder, name)
    name = inter[:-len('.inter')]
    path = osp.join(folder, inter)

    check_plain_text(path)
    header = _read_header(path)
    if not header.strip():
        raise DataFormatError(f"{path}: the file is empty, expected a header "
                              f"line with columns {', '.join(MMREC_COLUMNS)}")
    columns = _split_header(header)
    missing = [c for c in MMREC_COLUMNS if c not in columns]
    if missing:
        if all(_is_int(c) for c in columns):
            raise DataFormatError(
                f"{path}: no header line; the first line must name the "
                f"columns (tab-separated), including "
                f"{', '.join(MMREC_COLUMNS)}")
        raise DataFormatError(
            f"{path}: missing column(s) {', '.join(map(repr, missing))}; "
            f"found columns {columns}")
    table = _read_table(path, [columns.index(c) for c in MMREC_COLUMNS])
    if table.shape[0] == 0:
        raise DataFormatError(f"{path}: no interaction rows after the header")
    user, item, split = table[:, 0], table[:, 1], table[:, 2]

    for values, column in zip((user, item, split), MMREC_COLUMNS):
        bad = values < 0
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise DataFormatError(
                f"{path}: {int(bad.sum())} negative '{column}' value(s), e.g. "
                f"{int(values[first])} (data row {first + 1})")

    features, sources = _read_features(folder)
    sources['interactions'] = path
    num_users = int(user.max()) + 1
    num_items = int(item.max()) + 1
    if features:
        modality, feat = next(iter(features.items()))
        rows = feat.shape[0]
        if rows < num_items:
            # Item ids beyond the feature table: reported as out of range.
            num_items = rows
        elif rows > num_items:
            raise DataFormatError(
                f"{sources[modality]}: has {rows} rows but the interactions "
                f"of {path} have {num_items} items (max itemID + 1)")
    data = build_hetero_data(user, item, split, num_users, num_items,
                             features, name=name, sources=sources)
    for ids, n, kind in ((user, num_users, 'user'), (item, num_items, 'item')):
        unused = n - len(np.unique(ids))
        if unused > 0:
            log.warning("%s: %d of the %d %s ids have no interaction at all "
                        "(ids are expected to be contiguous)", path, unused,
                        n, kind)
    return data


# DiffMM ######################################################################

def read_diffmm(folder: str, name: Optional[str] = None) -> HeteroData:
    r"""Reads a dataset in DiffMM's layout.

    Entries :math:`\neq 0` of the three :obj:`[num_users, num_items]` matrices
    are interactions. Pickles are read with
    :class:`~pyg_mmrec.data.SparseMatrixUnpickler`, which refuses anything
    but sparse matrices.

    Args:
        folder (str): The dataset folder.
        name (str, optional): The dataset name. Defaults to the folder name.
    """
    _, name, _ = raw_files(folder, name)
    user, item, split, (num_users, num_items), sources = \
        read_diffmm_interactions(folder)
    features, feature_sources = _read_features(folder)
    sources.update(feature_sources)
    sources['interactions'] = osp.join(folder, DIFFMM_FILES[0])
    return build_hetero_data(user, item, split, num_users, num_items,
                             features, name=name, sources=sources)


def read_folder(folder: str, name: Optional[str] = None) -> HeteroData:
    r"""Detects the layout of :obj:`folder` and reads it.

    Args:
        folder (str): The dataset folder.
        name (str, optional): The dataset name (see :func:`read_mmrec` and
            :func:`read_diffmm`).
    """
    fmt = detect_format(folder)
    return globals()[f'read_{fmt}'](folder, name)
