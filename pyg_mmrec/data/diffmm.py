r"""The pickled matrices of the DiffMM layout: ``trnMat.pkl``,
``valMat.pkl`` and ``tstMat.pkl`` hold :class:`scipy.sparse` matrices of
shape :obj:`[num_users, num_items]`, read with a restricted unpickler that
refuses anything but sparse matrices and the NumPy arrays inside them.
:func:`~pyg_mmrec.data.read_diffmm` (in :mod:`pyg_mmrec.data.readers`)
builds the dataset from them."""
import importlib
import io
import os.path as osp
import pickle
from typing import Dict, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp

from .hetero import DataFormatError

DIFFMM_FILES = ('trnMat.pkl', 'valMat.pkl', 'tstMat.pkl')

_SPARSE_CLASSES = frozenset({
    'coo_matrix', 'csr_matrix', 'csc_matrix',
    'coo_array', 'csr_array', 'csc_array',
})


def _numpy_core(submodule: str):
    # NumPy 2 renamed `numpy.core` to `numpy._core`; importing the old name
    # emits a DeprecationWarning, so prefer the new one.
    try:
        return importlib.import_module(f'numpy._core.{submodule}')
    except ImportError:  # NumPy 1.x
        return importlib.import_module(f'numpy.core.{submodule}')


def _allowed_numpy_globals() -> Dict[Tuple[str, str], object]:
    multiarray = _numpy_core('multiarray')
    numeric = _numpy_core('numeric')
    allowed = {}
    for prefix in ('numpy.core', 'numpy._core'):
        allowed[(f'{prefix}.multiarray', '_reconstruct')] = \
            multiarray._reconstruct
        allowed[(f'{prefix}.multiarray', 'scalar')] = multiarray.scalar
        if hasattr(numeric, '_frombuffer'):
            allowed[(f'{prefix}.numeric', '_frombuffer')] = \
                numeric._frombuffer
    allowed[('numpy', 'ndarray')] = np.ndarray
    allowed[('numpy', 'dtype')] = np.dtype
    # Protocol 0-2 pickles store bytes as `_codecs.encode(text, 'latin1')`.
    allowed[('_codecs', 'encode')] = _latin1_encode
    return allowed


def _latin1_encode(text: str, encoding: str = 'utf-8',
                   errors: str = 'strict') -> bytes:
    if encoding.lower().replace('_', '-') not in ('latin1', 'latin-1'):
        raise pickle.UnpicklingError(
            f"refusing to decode bytes with the codec {encoding!r}")
    return text.encode('latin-1', errors)


class SparseMatrixUnpickler(pickle.Unpickler):
    r"""A restricted unpickler that only rebuilds SciPy sparse matrices and
    the NumPy arrays inside them, and refuses every other global (so a
    malicious file cannot run code).

    Classes pickled under SciPy's deprecated private module paths (such as
    ``scipy.sparse.coo`` or ``scipy.sparse._coo``) are resolved to the public
    classes of :mod:`scipy.sparse`, which keeps old files readable without a
    :class:`DeprecationWarning`, and after SciPy drops those modules.
    """
    _numpy_globals: Optional[Dict[Tuple[str, str], object]] = None

    def find_class(self, module: str, name: str):
        cls = type(self)
        if cls._numpy_globals is None:
            cls._numpy_globals = _allowed_numpy_globals()
        if (module == 'scipy.sparse' or module.startswith('scipy.sparse.')) \
                and name in _SPARSE_CLASSES and hasattr(sp, name):
            return getattr(sp, name)
        obj = cls._numpy_globals.get((module, name))
        if obj is not None:
            return obj
        raise pickle.UnpicklingError(
            f"refusing to load the forbidden global '{module}.{name}' (only "
            f"SciPy sparse matrices and NumPy arrays are allowed)")


def _load_sparse(path: str) -> sp.spmatrix:
    with open(path, 'rb') as f:
        raw = f.read()
    if not raw:
        raise DataFormatError(f"{path}: the file is empty")
    try:
        obj = SparseMatrixUnpickler(io.BytesIO(raw), encoding='latin1').load()
    except pickle.UnpicklingError as e:
        msg = str(e)
        if 'refusing' in msg:
            raise DataFormatError(f"{path}: {msg}") from None
        if 'truncated' in msg:
            raise DataFormatError(f"{path}: the pickle is truncated "
                                  f"({msg})") from None
        raise DataFormatError(f"{path}: not a valid pickle file "
                              f"({msg})") from None
    except EOFError:
        raise DataFormatError(f"{path}: the pickle is truncated (ended "
                              f"before its STOP opcode)") from None
    except Exception as e:
        raise DataFormatError(f"{path}: not a valid pickle of a sparse "
                              f"matrix ({type(e).__name__}: {e})") from None
    if not sp.issparse(obj):
        raise DataFormatError(
            f"{path}: expected a pickled scipy.sparse matrix, got "
            f"{type(obj).__module__}.{type(obj).__qualname__}")
    return obj


def _sparse_to_pairs(path: str, mat) -> Tuple[np.ndarray, np.ndarray,
                                              Tuple[int, int]]:
    r"""Validates a sparse matrix and returns the (row, col) of its non-zero
    entries, with duplicate entries summed."""
    try:
        shape = tuple(int(s) for s in mat.shape)
        if len(shape) != 2:
            raise ValueError(f"expected a 2-d matrix, got shape {shape}")
        if mat.format == 'coo':
            row = np.asarray(mat.row).reshape(-1).astype(np.int64)
            col = np.asarray(mat.col).reshape(-1).astype(np.int64)
            data = np.asarray(mat.data).reshape(-1)
            if not len(row) == len(col) == len(data):
                raise ValueError("row, col and data have different lengths")
        else:
            mat.check_format(full_check=True)
            coo = mat.tocoo()
            row, col, data = (coo.row.astype(np.int64),
                              coo.col.astype(np.int64), coo.data)
        if not (data.dtype == bool or np.issubdtype(data.dtype, np.number)):
            raise ValueError(f"non-numeric entries of dtype {data.dtype}")
    except DataFormatError:
        raise
    except Exception as e:
        raise DataFormatError(f"{path}: malformed sparse matrix "
                              f"({type(e).__name__}: {e})") from None
    for ids, n, kind in ((row, shape[0], 'row (user)'),
                         (col, shape[1], 'column (item)')):
        bad = (ids < 0) | (ids >= n)
        if bad.any():
            raise DataFormatError(
                f"{path}: {int(bad.sum())} {kind} index(es) out of range "
                f"[0, {n}), e.g. {int(ids[bad][0])}")
    row, col = _nonzero_pairs(row, col, data)
    return row, col, shape


def _nonzero_pairs(row: np.ndarray, col: np.ndarray, data: np.ndarray
                   ) -> Tuple[np.ndarray, np.ndarray]:
    r"""The (row, col) pairs whose summed entries are non-zero, sorted by row
    then column (binarised: entries :obj:`!= 0` are interactions). Memory is
    linear in the number of entries, never in the matrix's shape, which a
    crafted file could make huge."""
    order = np.lexsort((col, row))
    row, col, data = row[order], col[order], data[order]
    if len(row) == 0:
        return row, col
    first = np.ones(len(row), dtype=bool)
    first[1:] = (row[1:] != row[:-1]) | (col[1:] != col[:-1])
    starts = np.flatnonzero(first)
    keep = np.add.reduceat(data, starts) != 0
    return row[starts][keep], col[starts][keep]


def read_diffmm_interactions(folder: str) -> Tuple[
        np.ndarray, np.ndarray, np.ndarray, Tuple[int, int], Dict[str, str]]:
    r"""Reads the interactions of the three matrices of a DiffMM folder;
    entries :obj:`!= 0` are interactions.

    Args:
        folder (str): The dataset folder.

    Returns:
        (np.ndarray, np.ndarray, np.ndarray, (int, int), Dict[str, str]): The
        user, item and split code (:obj:`0` train, :obj:`1` validation,
        :obj:`2` test) of every interaction, the common shape
        :obj:`(num_users, num_items)` of the matrices, and the path of each
        split's file (keys :obj:`"train"`, :obj:`"val"`, :obj:`"test"`).
    """
    users: List[np.ndarray] = []
    items: List[np.ndarray] = []
    splits: List[np.ndarray] = []
    shapes: Dict[str, Tuple[int, int]] = {}
    sources: Dict[str, str] = {}
    for code, (split_name, f) in enumerate(zip(('train', 'val', 'test'),
                                               DIFFMM_FILES)):
        path = osp.join(folder, f)
        row, col, shape = _sparse_to_pairs(path, _load_sparse(path))
        if shapes and shape != shapes[DIFFMM_FILES[0]]:
            raise DataFormatError(
                f"{path}: shape {shape} differs from the shape "
                f"{shapes[DIFFMM_FILES[0]]} of "
                f"{osp.join(folder, DIFFMM_FILES[0])}")
        shapes[f] = shape
        sources[split_name] = path
        users.append(row)
        items.append(col)
        splits.append(np.full(len(row), code, dtype=np.int64))
    return (np.concatenate(users), np.concatenate(items),
            np.concatenate(splits), shapes[DIFFMM_FILES[0]], sources)
