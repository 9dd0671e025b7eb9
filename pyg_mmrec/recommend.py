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
import csv
import io
import itertools
import json
import logging
import os
from dataclasses import dataclass
from typing import (
    Any,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from .data import load_dataset
from .data.dataset import dataset_folder
from .data.preprocess import (
    ID_MAPS,
    ITEM_META,
    read_id_mapping,
    read_item_meta,
)
from .experiment import read_results, run_config
from .graphs import PairIndex, interaction_graph, train_graph
from .graphs.sparse import expand_runs
from .models import Recommender, get_model
from .train.checkpoint import load_checkpoint, seed_everything

#: The choices of what a user's recommendations leave out (its training
#: items, every item it interacted with in any split, or nothing).
EXCLUDES = ('train', 'known', 'none')

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


def inner_product_top_k(model: Recommender, users: Tensor, k: int,
                        exclude: Optional[PairIndex] = None,
                        batch_size: int = 1024, nlist: Optional[int] = None,
                        nprobe: int = 16) -> Tuple[Tensor, Tensor]:
    r""":func:`top_k` through an approximate inner-product index (faiss's
    inverted file, :obj:`IndexIVFFlat` with inner products, as PyG's
    :obj:`MIPSKNNIndex` uses faiss): the items' embeddings are clustered
    into :obj:`nlist` lists and a user's query
    scans the :obj:`nprobe` nearest lists only, so a query costs about
    :obj:`nprobe / nlist` of an exact ranking (default :obj:`nlist`:
    :math:`\sqrt{I}`, at least 39 items per list); with :obj:`nprobe = nlist`
    it is exact. A user's items in :obj:`exclude` are removed from its
    candidates (the search asks for :math:`k` plus their number). For
    catalogues of millions of items; ``experiments/bench_mips.py`` measures
    its recall against the exact top-:math:`k`.

    Raises:
        ValueError: If faiss is not installed or the model's scores are not
            inner products of its user and item embeddings (MCLN's
            transductive scores, popularity).
    """
    try:
        import faiss
    except ImportError:
        raise ValueError("the inner-product index needs faiss "
                         "(pip install faiss-cpu)") from None
    if type(model).score is not Recommender.score:
        raise ValueError(f"{type(model).__name__}'s scores are not inner "
                         f"products of user and item embeddings: use the "
                         f"exact ranking")
    if not 1 <= k <= model.num_items:
        raise ValueError(f"k must be between 1 and the number of items "
                         f"({model.num_items}), got {k}")
    users = torch.as_tensor(users, dtype=torch.long).flatten()
    _check_users(users, model.num_users)
    user_emb, item_emb = (t.detach().float().cpu().contiguous()
                          for t in model.embeddings())
    num_items, dim = item_emb.shape
    # faiss's k-means wants at least 39 items per list.
    nlist = nlist or max(1, min(int(num_items ** 0.5), num_items // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist,
                               faiss.METRIC_INNER_PRODUCT)
    index.train(item_emb.numpy())
    index.add(item_emb.numpy())
    index.nprobe = min(nprobe, nlist)
    items_out, scores_out = [], []
    for block in users.split(batch_size):
        extra = 0
        if exclude is not None:
            extra = int((exclude.ptr[block + 1] - exclude.ptr[block]).max())
        want = min(k + extra, num_items)
        scores, items = (torch.from_numpy(a) for a in index.search(
            user_emb[block].numpy(), want))
        scores = scores.float().masked_fill(items < 0, float('-inf'))
        if exclude is not None:
            seen = exclude.contains(block.view(-1, 1).expand_as(items),
                                    items.clamp(min=0))
            scores = scores.masked_fill(seen, float('-inf'))
        scores, order = scores.topk(k, dim=1)
        items = items.gather(1, order).masked_fill(
            scores == float('-inf'), -1)
        items_out.append(items)
        scores_out.append(scores)
    if not items_out:
        empty = torch.empty(0, k)
        return empty.long(), empty
    return torch.cat(items_out), torch.cat(scores_out)


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
    _check_users(users, model.num_users)
    pairs = excluded_pairs(data, exclude)
    if not 1 <= k <= model.num_items:  # before the first batch, as above
        raise ValueError(f"k must be between 1 and the number of items "
                         f"({model.num_items}), got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if index not in ('exact', 'ivf'):
        raise ValueError(f"index must be 'exact' or 'ivf', got {index!r}")
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
    :func:`recommendation_batches`, one at a time) to :obj:`path`, as JSON
    when it ends in :obj:`.json`, else as CSV, atomically (into
    :obj:`<path>.tmp`, renamed over :obj:`path` once complete). Returns the
    number of users written."""
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
