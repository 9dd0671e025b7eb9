r"""Top-:math:`K` recommendations from a finished run: the model rebuilt
from the run's :obj:`results.json` configuration with the weights of its
:obj:`best.pt` (or :obj:`last.pt`), every user's items ranked in batches,
a user's known items masked (its training items by default, every
interaction of every split with :obj:`exclude="known"`), users given by
their original ids through the id maps that :mod:`preprocess
<pyg_mmrec.data.preprocess>` writes (MMRec's :obj:`u_id_mapping.csv` /
:obj:`i_id_mapping.csv`), and the items' original ids and titles
(:obj:`item_meta.csv`) in the output when the dataset folder has them.

Example:
    >>> recs = recommend('runs/lightgcn-baby-seed0', users=[3, 17], k=10)
    >>> recs.items        # [2, 10] item ids, best first
    >>> recs.records()[0]  # {'user': 3, 'rank': 1, 'item': ..., 'score': ...}
    >>> write_recommendations(recs, 'recs.csv')

From the command line (every user streamed to the file in batches)::

    python -m pyg_mmrec recommend --run runs/lightgcn-ml-seed0 \
        --raw-users 196,186 --k 10 --exclude known
    python -m pyg_mmrec recommend --run runs/lightgcn-ml-seed0 \
        --all-users --output recs.csv
"""
import logging
import os
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data import load_dataset
from ..data.dataset import dataset_folder
from ..data.preprocess import ID_MAPS, read_id_mapping
from ..experiment import read_results, run_config
from ..graphs import PairIndex, interaction_graph, train_graph
from ..models import Recommender, get_model
from ..train.checkpoint import load_checkpoint, seed_everything
from .output import (
    Recommendations,
    find_id_mappings,
    find_item_titles,
    format_recommendations,
    write_recommendations,
)
from .ranking import check_users, inner_product_top_k, top_k

log = logging.getLogger('pyg_mmrec')

#: The choices of what a user's recommendations leave out (its training
#: items, every item it interacted with in any split, or nothing).
EXCLUDES = ('train', 'known', 'none')

#: The rankings: every item scored (exact) or an approximate inner-product
#: index (ivf, faiss).
INDEXES = ('exact', 'ivf')


def users_of_raw_ids(raw_users: Sequence[str],
                     raw_user_ids: Optional[Dict[int, str]],
                     folder: Optional[str]) -> Tensor:
    r"""The dataset ids of users given by their original ids, through the
    dataset's user id map (:obj:`raw_user_ids`, dataset id -> original).

    Raises:
        ValueError: If the dataset has no user id map or an id is unknown.
    """
    if raw_user_ids is None:
        raise ValueError(
            f"--raw-users needs the dataset's user id map "
            f"({ID_MAPS['user']}, written by preprocess), and "
            f"{folder or 'the dataset'} has none; give dataset ids with "
            f"--users")
    index = {raw: new for new, raw in raw_user_ids.items()}
    unknown = [u for u in raw_users if u not in index]
    if unknown:
        raise ValueError(f"unknown original user ids {unknown[:10]} (not in "
                         f"{ID_MAPS['user']}: users without enough "
                         f"interactions were filtered out by preprocess)")
    return torch.tensor([index[u] for u in raw_users], dtype=torch.long)


def excluded_pairs(data: HeteroData, exclude: str) -> Optional[PairIndex]:
    r"""The interactions that :obj:`exclude` (one of :data:`EXCLUDES`) keeps
    out of the recommendations: the training graph, every interaction, or
    none."""
    if exclude not in EXCLUDES:
        raise ValueError(f"exclude must be one of {EXCLUDES}, got "
                         f"{exclude!r}")
    if exclude == 'none':
        return None
    return train_graph(data) if exclude == 'train' else interaction_graph(
        data)


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


def recommendation_batches(
        run_dir: str, users: Optional[Sequence[int]] = None, k: int = 20,
        exclude: str = 'train', data_root: Optional[str] = None,
        dataset: Optional[str] = None, batch_size: int = 1024,
        device: str = 'cpu', data: Optional[HeteroData] = None,
        raw_users: Optional[Sequence[str]] = None, index: str = 'exact',
        nprobe: int = 16) -> Iterator[Recommendations]:
    r"""The :func:`recommend` of a run, one :class:`Recommendations` per
    :obj:`batch_size` users (for every user of a large dataset without
    holding all the lists: see :func:`write_recommendations`). The model,
    the dataset and its id maps are loaded before the first batch, so bad
    input is reported before any output."""
    model, data, config = load_run_model(run_dir, data_root, dataset,
                                         device, data)
    name = dataset or config['dataset']
    folder = None
    if name != 'synthetic':
        try:
            folder = dataset_folder(name, data_root)
        except FileNotFoundError:
            pass
    raw_user_ids, raw_item_ids = find_id_mappings(folder)
    titles = find_item_titles(folder)
    if raw_users is not None:
        users = users_of_raw_ids(list(raw_users), raw_user_ids, folder)
    users = (torch.arange(model.num_users) if users is None else
             torch.as_tensor(list(users), dtype=torch.long).flatten())
    check_users(users, model.num_users)
    pairs = excluded_pairs(data, exclude)
    if not 1 <= k <= model.num_items:  # before the first batch, as above
        raise ValueError(f"k must be between 1 and the number of items "
                         f"({model.num_items}), got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if index not in INDEXES:
        raise ValueError(f"index must be one of {INDEXES}, got {index!r}")
    if index == 'ivf':  # one index, built before the first batch
        items, scores = inner_product_top_k(model, users, k, pairs,
                                            batch_size, nprobe=nprobe)
        return iter([Recommendations(users, items, scores, raw_user_ids,
                                     raw_item_ids, titles)])

    def batches():
        for block in users.split(batch_size):
            items, scores = top_k(model, block, k, pairs, batch_size)
            yield Recommendations(block, items, scores, raw_user_ids,
                                  raw_item_ids, titles)
    return batches()


def recommend(run_dir: str, users: Optional[Sequence[int]] = None,
              k: int = 20, exclude: str = 'train',
              data_root: Optional[str] = None, dataset: Optional[str] = None,
              batch_size: int = 1024, device: str = 'cpu',
              data: Optional[HeteroData] = None,
              raw_users: Optional[Sequence[str]] = None,
              index: str = 'exact', nprobe: int = 16) -> Recommendations:
    r"""The top-:obj:`k` items of :obj:`users` (default: all) from the
    model of a finished run (see :func:`load_run_model` and
    :func:`top_k`), with the original ids and the item titles when the
    dataset folder has them (:obj:`ID_MAPS`, :obj:`ITEM_META`).

    Args:
        run_dir (str): The run directory.
        users (Sequence[int], optional): Dataset user ids.
            (default: every user)
        k (int): Items per user. (default: :obj:`20`)
        exclude (str): What is never recommended to a user (one of
            :data:`EXCLUDES`): its training items, every item it interacted
            with (all splits: for a deployed model that has seen them all),
            or nothing. (default: :obj:`"train"`)
        data_root (str, optional): Folder holding the datasets.
        dataset (str, optional): The dataset name or folder instead of the
            run's.
        batch_size (int): Users scored at a time. (default: :obj:`1024`)
        device (str): Device. (default: :obj:`"cpu"`)
        data (HeteroData, optional): The already loaded dataset.
        raw_users (Sequence[str], optional): The users by their original
            ids instead of :obj:`users` (through the dataset's
            :obj:`u_id_mapping.csv`).
        index (str): :obj:`"exact"` ranks every item; :obj:`"ivf"` searches
            an approximate inner-product index (see
            :func:`inner_product_top_k`). (default: :obj:`"exact"`)
        nprobe (int): Lists scanned per query with :obj:`"ivf"`.
            (default: :obj:`16`)
    """
    chunks = list(recommendation_batches(
        run_dir, users, k, exclude, data_root, dataset, batch_size, device,
        data, raw_users, index, nprobe))
    if not chunks:
        empty = torch.empty(0, k)
        return Recommendations(torch.empty(0, dtype=torch.long),
                               empty.long(), empty)
    first = chunks[0]
    return Recommendations(
        torch.cat([c.users for c in chunks]),
        torch.cat([c.items for c in chunks]),
        torch.cat([c.scores for c in chunks]), first.raw_user_ids,
        first.raw_item_ids, first.item_titles)


__all__ = [
    'EXCLUDES',
    'INDEXES',
    'Recommendations',
    'recommend',
    'recommendation_batches',
    'load_run_model',
    'checkpoint_path',
    'top_k',
    'inner_product_top_k',
    'users_of_raw_ids',
    'excluded_pairs',
    'find_id_mappings',
    'find_item_titles',
    'format_recommendations',
    'write_recommendations',
    'read_id_mapping',
    'ID_MAPS',
]
