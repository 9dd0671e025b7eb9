r"""Atomic writing of a preprocessed dataset folder.

:func:`~pyg_mmrec.data.preprocess.preprocess` writes every file into a
hidden temporary folder beside the output (same parent, named
``.<name>.tmp-<pid>``) and renames it to the output only once everything is
written, so a failure (a bad feature file, an interrupt, a full disk) never
leaves a folder that would load as a valid dataset with missing parts: the
temporary folder is removed and the output is left as it was.

An existing output folder is replaced at the end: it is first renamed aside
(``.<name>.old-<pid>``), the new folder takes its name, and only then is the
old one deleted, so the old dataset survives any failure before that point.
To never delete anything that preprocessing did not write, an existing
output folder is only replaced when it holds nothing but files that
preprocessing writes (``*.inter``, the id maps, ``stats.json``,
``*_feat.npy``) and none of the inputs; an existing *file* is refused. Both
checks run before any input is read (:obj:`check_output_dir`).
"""
import os
import os.path as osp
import re
import shutil
from contextlib import contextmanager
from typing import Iterable, Iterator, List, Optional

#: Names of the files preprocessing writes into a dataset folder.
WRITTEN_FILES = re.compile(
    r'^(.+\.inter|[ui]_id_mapping\.csv|stats\.json|\w+_feat\.npy)$')


def _is_within(path: str, folder: str) -> bool:
    path, folder = osp.realpath(path), osp.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def foreign_entries(folder: str) -> List[str]:
    r"""The entries of :obj:`folder` that preprocessing does not write
    (sub-folders included)."""
    return sorted(e for e in os.listdir(folder)
                  if WRITTEN_FILES.match(e) is None
                  or not osp.isfile(osp.join(folder, e)))


def check_output_dir(output_dir: str,
                     inputs: Iterable[Optional[str]] = ()) -> None:
    r"""Checks, before any work, that :obj:`output_dir` can be written or
    replaced as a whole (see the module docstring).

    Args:
        output_dir (str): The dataset folder to write.
        inputs (Iterable[str], optional): The input files and folders
            (:obj:`None` entries are skipped); none may lie in
            :obj:`output_dir`, which is replaced.

    Raises:
        ValueError: If :obj:`output_dir` (or its parent) is an existing file,
            or an existing folder holding an input or files that
            preprocessing does not write.
    """
    parent = osp.dirname(osp.abspath(output_dir))
    for path in (output_dir, parent):
        if osp.lexists(path) and not osp.isdir(path):
            raise ValueError(f"{path}: exists and is not a folder; the output"
                             f" must be a dataset folder (remove the file or "
                             f"choose another --output)")
    if not osp.isdir(output_dir):
        return
    for path in inputs:
        if path is not None and _is_within(path, output_dir):
            raise ValueError(
                f"{output_dir}: the output folder holds the input {path}, "
                f"and an existing output folder is replaced as a whole; "
                f"choose another --output")
    foreign = foreign_entries(output_dir)
    if foreign:
        raise ValueError(
            f"{output_dir}: the output folder exists and holds "
            f"{len(foreign)} entr{'y' if len(foreign) == 1 else 'ies'} that "
            f"preprocessing does not write ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}); it would be replaced "
            f"as a whole: choose another --output or remove them")


def _make_parents(folder: str) -> List[str]:
    # Creates the missing ancestors of `folder`; returns them, deepest last.
    created: List[str] = []
    path = osp.abspath(folder)
    while not osp.isdir(path):
        created.append(path)
        path = osp.dirname(path)
    for path in reversed(created):
        os.makedirs(path, exist_ok=True)
    return created[::-1]


def _remove_created(folders: List[str]) -> None:
    for path in reversed(folders):  # deepest first; only if still empty
        try:
            os.rmdir(path)
        except OSError:
            return


def _remove(path: str) -> None:
    if osp.islink(path) or not osp.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def replace_dir(new: str, output_dir: str) -> None:
    r"""Renames the folder :obj:`new` to :obj:`output_dir`, replacing an
    existing one: the old folder is renamed aside first and deleted only
    after the rename succeeded (restored if it failed)."""
    if not osp.lexists(output_dir):
        os.rename(new, output_dir)
        return
    parent, base = osp.split(osp.abspath(output_dir))
    aside = osp.join(parent, f'.{base}.old-{os.getpid()}')
    if osp.lexists(aside):
        _remove(aside)
    os.rename(output_dir, aside)
    try:
        os.rename(new, output_dir)
    except BaseException:
        os.rename(aside, output_dir)
        raise
    _remove(aside)


@contextmanager
def atomic_output_dir(output_dir: str) -> Iterator[str]:
    r"""Yields a fresh temporary folder beside :obj:`output_dir` to write
    into; on success it replaces :obj:`output_dir` (see
    :func:`replace_dir`), on any failure it is removed (with the parent
    folders this call created) and :obj:`output_dir` is left untouched.

    Args:
        output_dir (str): The folder to write.
    """
    parent, base = osp.split(osp.abspath(output_dir))
    created = _make_parents(parent)
    tmp = osp.join(parent, f'.{base}.tmp-{os.getpid()}')
    try:
        if osp.lexists(tmp):  # left over by a killed run with the same pid
            _remove(tmp)
        os.mkdir(tmp)
        yield tmp
        replace_dir(tmp, output_dir)
    except BaseException:
        if osp.lexists(tmp):
            _remove(tmp)
        _remove_created(created)
        raise
