r"""Top-:math:`K` recommendations from a finished run: the model rebuilt
from the run's :obj:`results.json` configuration with the weights of its
:obj:`best.pt` (or :obj:`last.pt`), every user's items ranked in batches,
the user's training items masked on request, and the ids mapped back to
the dataset's original ones when its folder has MMRec's
:obj:`u_id_mapping.csv` / :obj:`i_id_mapping.csv`.

Example:
    >>> recs = recommend('runs/lightgcn-baby-seed0', users=[3, 17], k=10)
    >>> recs.items        # [2, 10] item ids, best first
    >>> recs.records()[0]  # {'user': 3, 'rank': 1, 'item': ..., 'score': ...}
    >>> write_recommendations(recs, 'recs.csv')

From the command line::

    python -m pyg_mmrec recommend --run runs/lightgcn-baby-seed0 \
        --users 3,17 --k 10 --exclude-seen --output recs.csv
"""
import csv
import io
import itertools
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from .data import load_dataset
from .data.dataset import dataset_folder
from .data.preprocess import ID_MAPS, read_id_mapping
from .experiment import read_results, run_config
from .graphs import PairIndex, train_graph
from .graphs.sparse import expand_runs
from .models import Recommender, get_model
from .train.checkpoint import load_checkpoint, seed_everything

log = logging.getLogger('pyg_mmrec')

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
    """
    users: Tensor
    items: Tensor
    scores: Tensor
    raw_user_ids: Optional[Dict[int, str]] = None
    raw_item_ids: Optional[Dict[int, str]] = None

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


def checkpoint_path(run_dir: str) -> str:
    r"""The run's :obj:`best.pt`, else (with a warning) its :obj:`last.pt`.

    Raises:
        FileNotFoundError: If the run has neither.
    """
    best, last = (os.path.join(run_dir, f) for f in ('best.pt', 'last.pt'))
    if os.path.isfile(best):
        return best
    if os.path.isfile(last):
        log.warning("%s: no best.pt; using the weights of the last epoch "
                    "(last.pt)", run_dir)
        return last
    raise FileNotFoundError(f"{run_dir}: no best.pt or last.pt checkpoint")


def load_run_model(run_dir: str, data_root: Optional[str] = None,
                   dataset: Optional[str] = None, device: str = 'cpu',
                   data: Optional[HeteroData] = None
                   ) -> Tuple[Recommender, HeteroData, Dict[str, Any]]:
    r"""Rebuilds a run's model from its :obj:`results.json` configuration
    (model name, dataset, seed, model settings) and loads its checkpoint
    (see :func:`checkpoint_path`), in evaluation mode. Returns the model,
    the dataset and the run's configuration (see
    ``pyg_mmrec.experiment.run_config``).

    Args:
        run_dir (str): The run directory.
        data_root (str, optional): Folder holding the datasets, as for
            training. (default: :func:`~pyg_mmrec.data.dataset.default_root`)
        dataset (str, optional): The dataset name or folder instead of the
            configuration's.
        device (str): Device. (default: :obj:`"cpu"`)
        data (HeteroData, optional): The already loaded dataset.
    """
    config = run_config(read_results(run_dir))
    path = checkpoint_path(run_dir)
    if data is None:
        data = load_dataset(dataset or config['dataset'], root=data_root)
    data = data.to(device)
    seed_everything(config['seed'])  # as the run built it
    model = get_model(config['name'])(data, **config['model'])
    state = load_checkpoint(path, device, keys=(
        ('model', ) if path.endswith('last.pt') else ()))
    if path.endswith('last.pt'):
        state = state['model']
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: the weights do not fit the model rebuilt "
                         f"from results.json ({e})") from None
    model.to(device).eval()
    return model, data, config


def _check_users(users: Tensor, num_users: int) -> None:
    bad = users[(users < 0) | (users >= num_users)]
    if bad.numel():
        raise ValueError(
            f"unknown user ids {bad.unique().tolist()[:10]}: the dataset has "
            f"{num_users} users (ids 0..{num_users - 1})")


@torch.no_grad()
def top_k(model: Recommender, users: Tensor, k: int,
          exclude: Optional[PairIndex] = None,
          batch_size: int = 1024) -> Tuple[Tensor, Tensor]:
    r"""The top-:obj:`k` items of :obj:`users` by :obj:`model.score`,
    scored in batches of :obj:`batch_size` users, with each user's items in
    :obj:`exclude` (*e.g.* :func:`~pyg_mmrec.graphs.train_graph`) scored
    :obj:`-inf`. Returns the items :obj:`[N, k]` (:obj:`-1` in slots
    beyond a user's candidates) and their scores :obj:`[N, k]`.

    Raises:
        ValueError: If :obj:`k` is not in :math:`[1, I]` or a user id is
            out of range.
    """
    if not 1 <= k <= model.num_items:
        raise ValueError(f"k must be between 1 and the number of items "
                         f"({model.num_items}), got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    users = torch.as_tensor(users, dtype=torch.long).flatten()
    _check_users(users, model.num_users)
    device = next(itertools.chain(model.parameters(), model.buffers()),
                  torch.empty(0)).device
    users = users.to(device)
    if exclude is not None:  # each user's items: col[ptr[u]:ptr[u + 1]]
        ptr, col = exclude.ptr.to(device), exclude.edge_index[1].to(device)
    items_out, scores_out = [], []
    for start in range(0, users.numel(), batch_size):
        batch = users[start:start + batch_size]
        scores = model.score(batch)
        if not bool(torch.isfinite(scores).all()):
            raise ValueError(
                "the model's scores are not finite (nan or inf): the run "
                "diverged or its checkpoint is damaged; retrain it (e.g. "
                "with a lower --lr) before recommending")
        if exclude is not None:
            row, pos = expand_runs(ptr[batch], ptr[batch + 1] - ptr[batch])
            scores[row, col[pos]] = float('-inf')
        values, items = torch.topk(scores, k, dim=1, sorted=True)
        items.masked_fill_(values == float('-inf'), -1)
        items_out.append(items.cpu())
        scores_out.append(values.cpu())
    if not items_out:
        empty = torch.empty(0, k)
        return empty.long(), empty
    return torch.cat(items_out), torch.cat(scores_out)


def recommend(run_dir: str, users: Optional[Sequence[int]] = None,
              k: int = 20, exclude_seen: bool = True,
              data_root: Optional[str] = None, dataset: Optional[str] = None,
              batch_size: int = 1024, device: str = 'cpu',
              data: Optional[HeteroData] = None) -> Recommendations:
    r"""The top-:obj:`k` items of :obj:`users` (default: all) from the
    model of a finished run (see :func:`load_run_model` and
    :func:`top_k`), with the original ids when the dataset folder has the
    id maps of :obj:`ID_MAPS`.

    Args:
        run_dir (str): The run directory.
        users (Sequence[int], optional): Dataset user ids.
            (default: every user)
        k (int): Items per user. (default: :obj:`20`)
        exclude_seen (bool): Never recommend a user's training items.
            (default: :obj:`True`)
        data_root (str, optional): Folder holding the datasets.
        dataset (str, optional): The dataset name or folder instead of the
            run's.
        batch_size (int): Users scored at a time. (default: :obj:`1024`)
        device (str): Device. (default: :obj:`"cpu"`)
        data (HeteroData, optional): The already loaded dataset.
    """
    model, data, config = load_run_model(run_dir, data_root, dataset,
                                         device, data)
    users = (torch.arange(model.num_users) if users is None else
             torch.as_tensor(list(users), dtype=torch.long))
    exclude = train_graph(data) if exclude_seen else None
    items, scores = top_k(model, users, k, exclude, batch_size)
    name = dataset or config['dataset']
    folder = None
    if name != 'synthetic':
        try:
            folder = dataset_folder(name, data_root)
        except FileNotFoundError:
            pass
    raw_users, raw_items = find_id_mappings(folder)
    return Recommendations(users, items, scores, raw_users, raw_items)


def format_recommendations(recs: Recommendations, fmt: str = 'csv') -> str:
    r"""The records of :obj:`recs` (see :meth:`Recommendations.records`) as
    CSV (one line per item) or JSON (a list of records)."""
    records = recs.records()
    if fmt == 'json':
        return json.dumps(records, indent=1) + '\n'
    if fmt != 'csv':
        raise ValueError(f"format must be 'csv' or 'json', got {fmt!r}")
    fields = ['user', 'rank', 'item', 'score']
    fields += [f for f, ids in (('raw_user', recs.raw_user_ids),
                                ('raw_item', recs.raw_item_ids))
               if ids is not None]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator='\n')
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def write_recommendations(recs: Recommendations,
                          path: Union[str, os.PathLike]) -> None:
    r"""Writes :obj:`recs` to :obj:`path`, as JSON when it ends in
    :obj:`.json`, else as CSV."""
    fmt = 'json' if str(path).lower().endswith('.json') else 'csv'
    with open(path, 'w', newline='') as f:
        f.write(format_recommendations(recs, fmt))
