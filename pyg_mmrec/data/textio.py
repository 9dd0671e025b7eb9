r"""Reading text input strictly: every problem is a
:class:`~pyg_mmrec.data.DataFormatError` naming the file (and the line where
there is one), never a silently replaced character or a bare
:class:`UnicodeDecodeError`.

Two uses:

* raw logs for preprocessing (:func:`numbered_lines`), which may be gzipped
  (detected by the magic bytes :obj:`1f 8b`, whatever the file's name);
  a corrupt or truncated gzip stream is reported as such;
* dataset files (:func:`dataset_lines`, :func:`check_plain_text`), which must
  be plain UTF-8: a gzipped ``.inter`` is refused with "decompress it
  first".

Lines are split at :obj:`\n` and decoded one by one, so a byte sequence that
is not valid in the file's encoding is reported with its line number and
column. A UTF-8 byte-order mark at the start of the file is accepted and
removed. Encodings must be ASCII-compatible (UTF-8, Latin-1, ...).
"""
import codecs
import gzip
import io
import os.path as osp
import zlib
from typing import BinaryIO, Iterator, Tuple

from .hetero import DataFormatError

GZIP_MAGIC = b'\x1f\x8b'
#: What a broken gzip stream raises while it is being read.
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


def line_error(path: str, lineno: int, problem: str) -> DataFormatError:
    r"""The error for a bad line: ``<file>:<line>: <problem>``."""
    return DataFormatError(f"{path}:{lineno}: {problem}")


def is_gzip(path: str) -> bool:
    r"""Whether :obj:`path` starts with the gzip magic bytes."""
    with open(path, 'rb') as f:
        return f.read(2) == GZIP_MAGIC


def _check_file(path: str) -> None:
    if not osp.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")


def open_binary(path: str) -> BinaryIO:
    r"""Opens :obj:`path` for binary reading, decompressing it when it starts
    with the gzip magic bytes."""
    _check_file(path)
    if is_gzip(path):
        return gzip.open(path, 'rb')
    return open(path, 'rb')


def open_text(path: str, encoding: str = 'utf-8') -> io.TextIOBase:
    r"""Opens :obj:`path` (gzipped or not, see :obj:`open_binary`) as a
    strictly decoded text stream: undecodable bytes raise
    :class:`UnicodeDecodeError` rather than being replaced. Prefer
    :func:`numbered_lines`, whose errors name the file and line."""
    return io.TextIOWrapper(open_binary(path), encoding=_bom_aware(encoding),
                            errors='strict', newline='')


def _bom_aware(encoding: str) -> str:
    # 'utf-8-sig' removes a leading byte-order mark and is UTF-8 otherwise.
    name = codecs.lookup(encoding).name
    return 'utf-8-sig' if name in ('utf-8', 'utf-8-sig') else encoding


def _decode_error(path: str, lineno: int, encoding: str,
                  error: UnicodeDecodeError) -> DataFormatError:
    bad = error.object[error.start:error.start + 1].hex()
    return line_error(
        path, lineno, f"not valid {codecs.lookup(encoding).name.upper()} "
        f"text (byte 0x{bad} at position {error.start + 1} of the line: "
        f"{error.reason}); "
        f"convert the file to {encoding}")


def decode_lines(path: str, lines: Iterator[bytes], encoding: str = 'utf-8'
                 ) -> Iterator[Tuple[int, str]]:
    r"""Decodes the binary :obj:`lines` of :obj:`path` strictly, yielding
    :obj:`(line number, text)`; a corrupt gzip stream or an undecodable
    line raises :class:`~pyg_mmrec.data.DataFormatError`."""
    first = _bom_aware(encoding)
    lineno = 0
    try:
        for lineno, raw in enumerate(lines, start=1):
            try:
                yield lineno, raw.decode(first if lineno == 1 else encoding)
            except UnicodeDecodeError as e:
                raise _decode_error(path, lineno, encoding, e) from None
    except GZIP_ERRORS as e:
        raise DataFormatError(
            f"{path}: corrupt or truncated gzip file (after line {lineno}: "
            f"{str(e) or type(e).__name__})") from None


def numbered_lines(path: str, encoding: str = 'utf-8'
                   ) -> Iterator[Tuple[int, str]]:
    r"""Streams :obj:`(line number, line)` of a text file, gzipped or not
    (see :func:`open_binary`), decoded strictly (see :func:`decode_lines`):
    invalid text is refused with its file and line number, never replaced.

    Args:
        path (str): The file.
        encoding (str): Its (ASCII-compatible) encoding.
            (default: :obj:`"utf-8"`, a leading byte-order mark allowed)
    """
    with open_binary(path) as f:
        yield from decode_lines(path, f, encoding)


def check_plain_text(path: str) -> None:
    r"""Refuses a dataset file that is gzip-compressed (the dataset readers
    read plain text only).

    Raises:
        DataFormatError: If :obj:`path` starts with the gzip magic bytes.
    """
    _check_file(path)
    if is_gzip(path):
        raise DataFormatError(f"{path}: the file is gzip-compressed: "
                              f"decompress it first (gunzip)")


def dataset_lines(path: str) -> Iterator[Tuple[int, str]]:
    r"""Streams :obj:`(line number, line)` of a plain UTF-8 dataset file (a
    leading byte-order mark allowed); a gzipped or non-UTF-8 file raises
    :class:`~pyg_mmrec.data.DataFormatError` naming it."""
    check_plain_text(path)
    with open(path, 'rb') as f:
        yield from decode_lines(path, f, 'utf-8')


def first_undecodable_line(path: str) -> None:
    r"""Raises the error of the first line of :obj:`path` that is not valid
    UTF-8, if any (a slow scan, for error paths)."""
    for _ in dataset_lines(path):
        pass
