r"""MovieLens's layouts (``u.data``/``u.item``, ``ratings.csv``/
``movies.csv``, ``ratings.dat``/``movies.dat``): the ratings, read as
delimited files (:func:`~pyg_mmrec.data.preprocess.raw.read_delimited`),
and each movie's "title genres" text."""
import os.path as osp
from typing import Dict, List, Optional, Set

from ..hetero import DataFormatError
from ..textio import line_error
from .raw import (
    RawInteractions,
    _split_rows,
    read_delimited,
    read_delimited_titles,
)

#: file name -> (delimiter, header or None to read it, encoding, item file,
#: item-file delimiter, text columns, item file has a header)
MOVIELENS_FILES = {
    'u.data': ('\t', ['userId', 'movieId', 'rating', 'timestamp'], 'utf-8',
               'u.item', '|', [1], False),
    'ratings.csv': (',', None, 'utf-8', 'movies.csv', ',', [1, 2], True),
    'ratings.dat': ('::', ['userId', 'movieId', 'rating', 'timestamp'],
                    'latin-1', 'movies.dat', '::', [1, 2], False),
}


def movielens_ratings_file(path: str) -> str:
    r"""The ratings file of a MovieLens folder or file (``u.data``,
    ``ratings.csv`` or ``ratings.dat``)."""
    if osp.isdir(path):
        for name in MOVIELENS_FILES:
            if osp.isfile(osp.join(path, name)):
                return osp.join(path, name)
        raise FileNotFoundError(f"{path}: no MovieLens ratings file "
                                f"({', '.join(MOVIELENS_FILES)})")
    if osp.basename(path) not in MOVIELENS_FILES:
        raise DataFormatError(f"{path}: not a MovieLens ratings file; "
                              f"expected one of {', '.join(MOVIELENS_FILES)}")
    return path


def read_movielens(path: str, progress: bool = False) -> RawInteractions:
    r"""Reads MovieLens ratings: ``u.data`` (tab-separated user, item,
    rating, timestamp; no header), ``ratings.csv`` (header
    :obj:`userId,movieId,rating,timestamp`) or ``ratings.dat``
    (:obj:`::`-separated).

    Args:
        path (str): The ratings file or its folder.
        progress (bool): Show a progress bar. (default: :obj:`False`)
    """
    path = movielens_ratings_file(path)
    delimiter, header, encoding = MOVIELENS_FILES[osp.basename(path)][:3]
    return read_delimited(path, 'userId', 'movieId', 'rating', 'timestamp',
                          delimiter, header, encoding, progress)


#: MovieLens 100k's genres in the order of ``u.item``'s flag columns (its
#: ``u.genre`` file, read instead when it is beside the item file).
ML100K_GENRES = (
    'unknown', 'Action', 'Adventure', 'Animation', "Children's", 'Comedy',
    'Crime', 'Documentary', 'Drama', 'Fantasy', 'Film-Noir', 'Horror',
    'Musical', 'Mystery', 'Romance', 'Sci-Fi', 'Thriller', 'War', 'Western')
#: The first genre-flag column of ``u.item`` (after id, title, release
#: date, video release date and IMDb URL).
ML100K_FLAGS = 5


def ml100k_genres(item_file: str) -> List[str]:
    r"""The genre names of ``u.item``'s flag columns: ``u.genre`` beside
    it (``name|index`` lines), else :data:`ML100K_GENRES`."""
    path = osp.join(osp.dirname(item_file), 'u.genre')
    if not osp.isfile(path):
        return list(ML100K_GENRES)
    names = {}
    for lineno, fields in _split_rows(path, '|', 'latin-1', False):
        if len(fields) >= 2 and fields[1].strip().isdigit():
            names[int(fields[1])] = fields[0].strip()
    return [names.get(i, '') for i in range(max(names, default=-1) + 1)]


def read_ml100k_titles(path: str, wanted: Set[str]) -> Dict[str, str]:
    r"""Maps raw movie ids of :obj:`wanted` to "title genres" from a
    MovieLens 100k ``u.item`` (pipe-separated, latin-1): the title, then
    the names (:func:`ml100k_genres`) of the genre flags set to 1."""
    genres = ml100k_genres(path)
    texts = {}
    for lineno, fields in _split_rows(path, '|', 'latin-1', False):
        if not ''.join(fields).strip():
            continue
        if len(fields) < 2:
            raise line_error(path, lineno, f"{len(fields)} field(s), "
                             f"expected at least 2")
        item = fields[0].strip()
        if item in wanted:
            flags = fields[ML100K_FLAGS:ML100K_FLAGS + len(genres)]
            texts[item] = ' '.join([fields[1].strip()] + [
                genres[k] for k, flag in enumerate(flags)
                if flag.strip() == '1' and genres[k]])
    return texts


def read_movielens_titles(ratings_path: str, wanted: Set[str],
                          meta: Optional[str] = None) -> Dict[str, str]:
    r"""Maps raw movie ids of :obj:`wanted` to "title genres" from the item
    file beside the ratings (``u.item``: latin-1, pipe-separated, genres
    as flags, see :func:`read_ml100k_titles`; ``movies.csv`` /
    ``movies.dat``: title and genres columns).

    Args:
        ratings_path (str): The ratings file or its folder.
        wanted (Set[str]): Raw movie ids to keep.
        meta (str, optional): The item file. Defaults to the one beside
            the ratings.
    """
    ratings_path = movielens_ratings_file(ratings_path)
    (_, _, _, item_file, delimiter, cols,
     has_header) = MOVIELENS_FILES[osp.basename(ratings_path)]
    meta = meta or osp.join(osp.dirname(ratings_path), item_file)
    if item_file == 'u.item':
        return read_ml100k_titles(meta, wanted)
    encoding = 'utf-8' if item_file == 'movies.csv' else 'latin-1'
    return read_delimited_titles(meta, 0, cols, delimiter, wanted,
                                 has_header, encoding)
