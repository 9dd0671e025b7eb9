r"""Recommendations as records, CSV and JSON, and the dataset folder's
metadata that labels them: original ids (MMRec's :obj:`u_id_mapping.csv`
/ :obj:`i_id_mapping.csv`, written by ``preprocess``) and item titles
(:obj:`item_meta.csv`)."""
import csv
import io
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from torch import Tensor

from ..data.preprocess import (
    ID_MAPS,
    ITEM_META,
    read_id_mapping,
    read_item_meta,
)


@dataclass
class Recommendations:
    r"""The top-:math:`K` items of some users.

    Attributes:
        users (torch.Tensor): The users :obj:`[N]`.
        items (torch.Tensor): Their items, best first, :obj:`[N, K]`
            (:obj:`-1` where a user has fewer than :math:`K` candidates).
        scores (torch.Tensor): The items' scores :obj:`[N, K]`
            (:obj:`-inf` in empty slots).
        raw_user_ids (dict, optional): Dataset user id -> original id.
        raw_item_ids (dict, optional): Dataset item id -> original id.
        item_titles (dict, optional): Dataset item id -> its title.
    """
    users: Tensor
    items: Tensor
    scores: Tensor
    raw_user_ids: Optional[Dict[int, str]] = None
    raw_item_ids: Optional[Dict[int, str]] = None
    item_titles: Optional[Dict[int, str]] = None

    def fields(self) -> List[str]:
        r"""The keys of :meth:`records`, in order."""
        return ['user', 'rank', 'item', 'score'] + [
            name for name, known in (('raw_user', self.raw_user_ids),
                                     ('raw_item', self.raw_item_ids),
                                     ('title', self.item_titles))
            if known is not None]

    def records(self) -> List[Dict[str, Any]]:
        r"""One record per recommended item: :obj:`user`, :obj:`rank`
        (from 1), :obj:`item`, :obj:`score`, and :obj:`raw_user` /
        :obj:`raw_item` where the id maps exist; empty slots are left out."""
        out = []
        for user, items, scores in zip(self.users.tolist(),
                                       self.items.tolist(),
                                       self.scores.tolist()):
            for rank, (item, score) in enumerate(zip(items, scores), 1):
                if item < 0:
                    break
                record: Dict[str, Any] = {'user': user, 'rank': rank,
                                          'item': item, 'score': score}
                if self.raw_user_ids is not None:
                    record['raw_user'] = self.raw_user_ids.get(user)
                if self.raw_item_ids is not None:
                    record['raw_item'] = self.raw_item_ids.get(item)
                if self.item_titles is not None:
                    record['title'] = self.item_titles.get(item, '')
                out.append(record)
        return out


def find_id_mappings(folder: Optional[str]
                     ) -> Tuple[Optional[Dict[int, str]],
                                Optional[Dict[int, str]]]:
    r"""The user and item id maps of a dataset folder (:obj:`ID_MAPS`),
    :obj:`None` for a missing one."""
    maps = []
    for kind in ('user', 'item'):
        path = None if folder is None else os.path.join(folder, ID_MAPS[kind])
        maps.append(read_id_mapping(path) if path and os.path.isfile(path)
                    else None)
    return maps[0], maps[1]


def find_item_titles(folder: Optional[str]) -> Optional[Dict[int, str]]:
    r"""The item titles of a dataset folder (:obj:`ITEM_META`, written by
    ``preprocess`` from the item metadata), :obj:`None` without them."""
    path = None if folder is None else os.path.join(folder, ITEM_META)
    return read_item_meta(path) if path and os.path.isfile(path) else None


def format_recommendations(recs: Recommendations, fmt: str = 'csv') -> str:
    r"""The records of :obj:`recs` (see :meth:`Recommendations.records`) as
    CSV (one line per item) or JSON (a list of records)."""
    out = io.StringIO()
    _write_records([recs], out, fmt)
    return out.getvalue()


def _write_records(chunks: Iterable[Recommendations], out,
                   fmt: str) -> int:
    # Writes the records of every chunk to the text stream; returns the
    # number of users.
    if fmt not in ('csv', 'json'):
        raise ValueError(f"format must be 'csv' or 'json', got {fmt!r}")
    writer, count, first = None, 0, True
    if fmt == 'json':
        out.write('[')
    for recs in chunks:
        count += recs.users.numel()
        records = recs.records()
        if fmt == 'json':
            for record in records:
                out.write(('\n' if first else ',\n') + json.dumps(record))
                first = False
            continue
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=recs.fields(),
                                    lineterminator='\n')
            writer.writeheader()
        writer.writerows(records)
    if fmt == 'json':
        out.write('\n]\n')
    return count


def write_recommendations(
        recs: Union[Recommendations, Iterable[Recommendations]],
        path: Union[str, os.PathLike]) -> int:
    r"""Writes :obj:`recs` (or the chunks of
    :func:`~pyg_mmrec.recommend.recommendation_batches`, one at a time) to
    :obj:`path`, as JSON when it ends in :obj:`.json`, else as CSV,
    atomically (into :obj:`<path>.tmp`, renamed over :obj:`path` once
    complete). Returns the number of users written."""
    path = str(path)
    fmt = 'json' if path.lower().endswith('.json') else 'csv'
    chunks = [recs] if isinstance(recs, Recommendations) else recs
    tmp = f'{path}.tmp'
    try:
        with open(tmp, 'w', newline='', encoding='utf-8') as f:
            count = _write_records(chunks, f, fmt)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return count
