r"""Streaming readers of raw interaction logs: Amazon review dumps (2014,
including its python-literal "loose JSON", and 2018) and generic delimited
files (MovieLens's layouts are in
:mod:`~pyg_mmrec.data.preprocess.movielens`).

Files are read line by line (gzip detected by its magic bytes), so a
multi-GB dump is never held in memory: only the interned
:class:`RawInteractions` (four compact numeric arrays and the raw id
strings) are kept. Malformed input raises
:class:`~pyg_mmrec.data.DataFormatError` as ``<file>:<line>: <problem>``:
text that is not valid in the file's encoding (UTF-8 unless stated; a
leading byte-order mark is accepted) is refused at its first bad line rather
than dropped or replaced, since a mangled id would silently split a user or
item in two; a corrupt or truncated gzip stream is refused as such.
"""
import ast
import csv
import json
import math
import os.path as osp
from array import array
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np
from tqdm import tqdm

from ..hetero import DataFormatError
from ..textio import line_error, open_text  # noqa: F401 (re-exported)
from ..textio import numbered_lines as _strict_lines

FORMATS = ('amazon', 'movielens', 'csv')
_PROGRESS_EVERY = 100_000


def numbered_lines(path: str, encoding: str = 'utf-8',
                   progress: bool = False) -> Iterator[Tuple[int, str]]:
    r"""Streams :obj:`(line number, line)` of a text file (gzipped or not),
    with a progress bar of lines read. Decoding is strict (see
    ``pyg_mmrec.data.textio.numbered_lines``): a line that is not valid
    in :obj:`encoding` stops the read with a
    :class:`~pyg_mmrec.data.DataFormatError` naming the file and the line
    (never silently replaced characters, which would corrupt ids); so does
    a corrupt or truncated gzip stream. A UTF-8 byte-order mark at the start
    is removed."""
    bar = tqdm(desc=f'reading {osp.basename(path)}', unit=' lines',
               disable=not progress, unit_scale=True)
    with bar:
        lineno = 0
        for lineno, line in _strict_lines(path, encoding):
            if lineno % _PROGRESS_EVERY == 0:
                bar.update(_PROGRESS_EVERY)
            yield lineno, line
        bar.update(lineno % _PROGRESS_EVERY)


@dataclass
class RawInteractions:
    r"""Interactions read from a raw log, with ids interned to integers in
    order of first appearance.

    Attributes:
        user, item (np.ndarray): :obj:`int32` interned ids per line.
        rating (np.ndarray): :obj:`float32` rating (:obj:`1.0` when the
            source has none).
        time (np.ndarray): :obj:`int64` timestamp (:obj:`0` when the source
            has none).
        user_ids, item_ids (List[str]): Raw id of each interned id.
        source (str): The file read, for messages.
        lines (int): Non-empty data lines read.
    """
    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    time: np.ndarray
    user_ids: List[str]
    item_ids: List[str]
    source: str
    lines: int


class _Interner:
    r"""Collects (user, item, rating, time) rows into compact arrays."""
    def __init__(self) -> None:
        self.users: Dict[str, int] = {}
        self.items: Dict[str, int] = {}
        # 4-byte ids and ratings, 8-byte times: 20 bytes per interaction.
        self.user, self.item = array('i'), array('i')
        self.rating, self.time = array('f'), array('q')

    def add(self, user: str, item: str, rating: float, time: int) -> None:
        self.user.append(self.users.setdefault(user, len(self.users)))
        self.item.append(self.items.setdefault(item, len(self.items)))
        self.rating.append(rating)
        self.time.append(time)

    def result(self, source: str, lines: int) -> RawInteractions:
        if not self.user:
            raise DataFormatError(f"{source}: no interactions found")
        # Views on the arrays' buffers, no copy.
        return RawInteractions(
            np.frombuffer(self.user, np.int32),
            np.frombuffer(self.item, np.int32),
            np.frombuffer(self.rating, np.float32),
            np.frombuffer(self.time, np.int64),
            list(self.users), list(self.items), source, lines)


_INT64_LIMIT = 2 ** 63
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _number(path: str, lineno: int, value, what: str, kind=float):
    r"""Parses a rating (:obj:`float`, stored as float32) or a time
    (:obj:`int`, stored as int64), refusing text, NaN, infinities and values
    out of the stored type's range with the file, line and value."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise line_error(path, lineno,
                         f"non-numeric {what} {value!r}") from None
    limit, dtype = ((_INT64_LIMIT, 'int64') if kind is int else
                    (_FLOAT32_MAX, 'float32'))
    if not math.isfinite(number) or abs(number) >= limit:
        raise line_error(path, lineno, f"{what} {value!r} is not a finite "
                         f"number in the range of {dtype}")
    return int(number) if kind is int else number


# Amazon ######################################################################

def parse_json_line(path: str, lineno: int, line: str) -> dict:
    r"""Parses one JSON line, falling back to :func:`ast.literal_eval` for
    the python-literal "loose JSON" of the 2014 Amazon dumps."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as e:
        try:
            record = ast.literal_eval(line.strip())
        except (ValueError, TypeError, SyntaxError, MemoryError,
                RecursionError):
            raise line_error(path, lineno,
                             f"malformed JSON line ({e})") from None
    if not isinstance(record, dict):
        raise line_error(path, lineno, f"expected a JSON object, got "
                         f"{type(record).__name__}")
    return record


def read_amazon(path: str, progress: bool = False) -> RawInteractions:
    r"""Reads an Amazon review dump (2014 or 2018 JSON lines, gzipped or
    plain): fields :obj:`reviewerID`, :obj:`asin`, :obj:`overall` and
    :obj:`unixReviewTime`; other fields (:obj:`vote`, :obj:`style`, ...) are
    ignored.

    Args:
        path (str): The review file.
        progress (bool): Show a progress bar. (default: :obj:`False`)
    """
    out, lines = _Interner(), 0
    for lineno, line in numbered_lines(path, progress=progress):
        if not line.strip():
            continue
        lines += 1
        r = parse_json_line(path, lineno, line)
        try:
            user, item = r['reviewerID'], r['asin']
            rating, time = r['overall'], r['unixReviewTime']
        except KeyError as e:
            raise line_error(path, lineno,
                             f"missing field {e.args[0]!r}") from None
        out.add(str(user), str(item),
                _number(path, lineno, rating, "rating 'overall'"),
                _number(path, lineno, time, "time 'unixReviewTime'", int))
    return out.result(path, lines)


def _flatten(value) -> List[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _flatten(v)]
    text = str(value).strip()
    return [text] if text else []


def amazon_item_text(record: dict) -> str:
    r"""The text of an Amazon metadata record, as in MMRec: title + brand +
    categories + description, with the 2014 :obj:`categories` (list of
    lists) or the 2018 :obj:`category` (list); repeated categories once."""
    categories = _flatten(record.get('categories', record.get('category')))
    parts = (_flatten(record.get('title')) + _flatten(record.get('brand')) +
             list(dict.fromkeys(categories)) +
             _flatten(record.get('description')))
    return ' '.join(parts)


def read_amazon_meta(path: str, wanted: Set[str],
                     progress: bool = False) -> Dict[str, str]:
    r"""Maps each raw item id of :obj:`wanted` found in an Amazon metadata
    file (``meta_*.json(.gz)``) to its text (see :func:`amazon_item_text`);
    other items' records are skipped after reading their :obj:`asin`.

    Args:
        path (str): The metadata file.
        wanted (Set[str]): Raw item ids to keep.
        progress (bool): Show a progress bar. (default: :obj:`False`)
    """
    texts = {}
    for lineno, line in numbered_lines(path, progress=progress):
        if not line.strip():
            continue
        record = parse_json_line(path, lineno, line)
        if 'asin' not in record:
            raise line_error(path, lineno, "missing field 'asin'")
        asin = str(record['asin'])
        if asin in wanted:
            texts[asin] = amazon_item_text(record)
    return texts


# Delimited files (MovieLens, generic CSV) ####################################

def read_delimited(path: str, user_col: str, item_col: str,
                   rating_col: Optional[str] = None,
                   time_col: Optional[str] = None, delimiter: str = ',',
                   header: Optional[Sequence[str]] = None,
                   encoding: str = 'utf-8',
                   progress: bool = False) -> RawInteractions:
    r"""Reads a delimited interaction file, columns chosen by name.

    Args:
        path (str): The file (gzipped or plain).
        user_col, item_col (str): User and item column names.
        rating_col, time_col (str, optional): Rating and time column names;
            absent ones are :obj:`1.0` and :obj:`0`.
        delimiter (str): Field separator; several characters (e.g.
            :obj:`"::"`) split literally. (default: :obj:`","`)
        header (Sequence[str], optional): Column names of a file without a
            header line. Defaults to reading the first line.
        encoding (str): Text encoding. (default: :obj:`"utf-8"`)
        progress (bool): Show a progress bar. (default: :obj:`False`)
    """
    rows = _split_rows(path, delimiter, encoding, progress)
    if header is None:
        first = next(rows, None)
        if first is None:
            raise DataFormatError(f"{path}: the file is empty, expected a "
                                  f"header line")
        header = [c.strip() for c in first[1]]
    header = list(header)
    wanted = [('user', user_col), ('item', item_col), ('rating', rating_col),
              ('time', time_col)]
    index = {}
    for role, name in wanted:
        if name is None:
            continue
        if name not in header:
            raise DataFormatError(f"{path}: missing {role} column {name!r}; "
                                  f"found columns {header}")
        index[role] = header.index(name)
    need = max(index.values()) + 1
    u, i = index['user'], index['item']
    r, t = index.get('rating'), index.get('time')
    out, lines = _Interner(), 0
    for lineno, fields in rows:
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        lines += 1
        if len(fields) < need:
            raise line_error(path, lineno, f"{len(fields)} field(s), "
                             f"expected at least {need}")
        rating = 1.0 if r is None else _number(
            path, lineno, fields[r], "rating")
        time = 0 if t is None else _number(path, lineno, fields[t], 'time',
                                           int)
        out.add(fields[u].strip(), fields[i].strip(), rating, time)
    return out.result(path, lines)


def _split_rows(path: str, delimiter: str, encoding: str,
                progress: bool) -> Iterator[Tuple[int, List[str]]]:
    lines = numbered_lines(path, encoding, progress)
    if len(delimiter) == 1:
        # csv handles quoting; the line number is that of the record start.
        numbered = iter(lines)
        current = [0]

        def text() -> Iterator[str]:
            for lineno, line in numbered:
                current[0] = lineno
                yield line
        reader = csv.reader(text(), delimiter=delimiter)
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as e:  # e.g. a field over csv's size limit
                raise line_error(path, current[0], f"malformed delimited "
                                 f"line ({e})") from None
            yield current[0], fields
    else:
        for lineno, line in lines:
            yield lineno, line.rstrip('\r\n').split(delimiter)


def read_delimited_titles(path: str, id_col: int, text_cols: Sequence[int],
                          delimiter: str, wanted: Set[str],
                          skip_header: bool, encoding: str = 'utf-8'
                          ) -> Dict[str, str]:
    r"""Maps raw item ids of :obj:`wanted` to the space-joined text columns
    of a delimited item file (MovieLens ``u.item``, ``movies.csv``)."""
    texts = {}
    rows = _split_rows(path, delimiter, encoding, False)
    if skip_header:
        next(rows, None)
    for lineno, fields in rows:
        if not fields or not ''.join(fields).strip():
            continue
        if len(fields) <= max([id_col, *text_cols]):
            raise line_error(path, lineno, f"{len(fields)} field(s), expected"
                             f" at least {max([id_col, *text_cols]) + 1}")
        item = fields[id_col].strip()
        if item in wanted:
            texts[item] = ' '.join(
                fields[c].replace('|', ' ').strip() for c in text_cols)
    return texts
