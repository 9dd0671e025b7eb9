r"""A seeded synthetic multimodal recommendation dataset with a known
generative model, for tests, examples and benchmarks."""
import math
from types import MappingProxyType
from typing import Dict, Mapping

import numpy as np
import scipy.sparse as sp
import torch
from torch_geometric.data import HeteroData

from .hetero import ITEM, build_hetero_data, num_items, split_edge_index

#: Default modalities of :func:`make_synthetic` (name -> feature dimension).
DEFAULT_MODALITIES: Mapping[str, int] = MappingProxyType({
    'image': 64,
    'text': 32,
})


def make_synthetic(
    num_users: int = 4000,
    num_items: int = 3000,
    latent_dim: int = 16,
    mean_interactions: float = 8.0,
    min_interactions: int = 5,
    activity_exponent: float = 2.5,
    popularity_exponent: float = 0.8,
    temperature: float = 0.07,
    modalities: Mapping[str, int] = DEFAULT_MODALITIES,
    modality_fraction: float = 0.75,
    feature_noise: float = 0.5,
    seed: int = 0,
    name: str = 'synthetic',
) -> HeteroData:
    r"""Generates a synthetic multimodal recommendation dataset.

    Users and items have unit-norm latent vectors :math:`\mathbf{z}_u,
    \mathbf{z}_i \in \mathbb{R}^{d}`. User :math:`u` draws :math:`n_u` distinct
    items (Gumbel-top-:math:`k`) from

    .. math::
        \mathrm{logit}_{u,i} = \log p_i + \frac{\mathbf{z}_u^{\top}
        \mathbf{z}_i}{\tau},

    where the activity :math:`n_u \geq` :obj:`min_interactions` follows a
    power law (Lomax tail with exponent :obj:`activity_exponent`) and the
    popularity :math:`p_i \propto r_i^{-\beta}` is Zipf-like over a random
    item ranking :math:`r_i`; activity is capped at :obj:`num_items // 5`.
    Each modality :math:`m` sees a random subset
    :math:`S_m` of the latent dimensions through a random linear map,

    .. math::
        \mathbf{x}^{(m)}_i = \mathbf{z}_{i, S_m} \mathbf{W}_m +
        \sigma \boldsymbol{\epsilon}_i,

    so each modality carries part of the preference signal, also for items
    with few interactions. Interactions are split per user with MMRec's rule:
    shuffle a user's :math:`n` items; :math:`n_{vt} = 2` if :math:`n < 10`
    else :math:`\lfloor 0.2 n \rfloor`; the last :math:`n_{vt} -
    \lfloor n_{vt}/2 \rfloor` go to test, the :math:`\lfloor n_{vt}/2
    \rfloor` before them to validation, the rest to training.

    The defaults are sparse like the Amazon sets (about 8 interactions per
    user, 8 training interactions per item), where ID embeddings of the
    many low-degree items are poorly estimated and the features pay off:
    there a multimodal model beats an ID-only one. Dense settings (e.g.
    :obj:`num_users=2000, num_items=1000, mean_interactions=22`, ~34
    training interactions per item) let ID-only models catch up.

    Args:
        num_users (int): Number of users. (default: :obj:`4000`)
        num_items (int): Number of items. (default: :obj:`3000`)
        latent_dim (int): Dimension :math:`d` of the latent vectors.
            (default: :obj:`16`)
        mean_interactions (float): Target mean interactions per user (the
            cap at :obj:`num_items // 5` may lower it slightly).
            (default: :obj:`8.0`)
        min_interactions (int): Minimum interactions per user (at least
            :obj:`3`, so that every split gets one). (default: :obj:`5`)
        activity_exponent (float): Tail exponent of user activity; smaller is
            heavier. (default: :obj:`2.5`)
        popularity_exponent (float): Zipf exponent :math:`\beta` of item
            popularity. (default: :obj:`0.8`)
        temperature (float): Temperature :math:`\tau` of the preference term;
            smaller makes preferences matter more than popularity.
            (default: :obj:`0.07`)
        modalities (Mapping[str, int]): Modality name to feature dimension;
            empty for an interactions-only dataset.
            (default: :obj:`{"image": 64, "text": 32}`)
        modality_fraction (float): Fraction of the latent dimensions each
            modality sees. (default: :obj:`0.75`)
        feature_noise (float): Standard deviation :math:`\sigma` of the noise,
            relative to the signal's per-dimension scale.
            (default: :obj:`0.5`)
        seed (int): Seed; the output is a deterministic function of the
            arguments. (default: :obj:`0`)
        name (str): Dataset name. (default: :obj:`"synthetic"`)
    """
    if min_interactions < 3:
        raise ValueError(f"min_interactions must be >= 3 so that every user "
                         f"has a training, validation and test item, got "
                         f"{min_interactions}")
    if num_items < 2 * min_interactions:
        raise ValueError(f"num_items ({num_items}) must be at least twice "
                         f"min_interactions ({min_interactions})")
    if mean_interactions < min_interactions:
        raise ValueError(f"mean_interactions ({mean_interactions}) must be "
                         f">= min_interactions ({min_interactions})")
    if activity_exponent <= 1:
        raise ValueError(f"activity_exponent must be > 1, got "
                         f"{activity_exponent}")

    rng = np.random.default_rng(seed)
    z_user = _unit_rows(rng.standard_normal((num_users, latent_dim)))
    z_item = _unit_rows(rng.standard_normal((num_items, latent_dim)))

    # Power-law activity: min + Lomax(a) scaled to the requested mean.
    scale = (mean_interactions - min_interactions) * (activity_exponent - 1)
    extra = np.floor(scale * rng.pareto(activity_exponent, num_users))
    cap = max(2 * min_interactions, num_items // 5)
    degree = np.minimum(min_interactions + extra, cap).astype(np.int64)

    # Zipf-like popularity over a random item ranking.
    rank = rng.permutation(num_items) + 1
    log_pop = -popularity_exponent * np.log(rank)

    user, item = _gumbel_top_k(z_user, z_item, log_pop, degree, temperature,
                               rng)
    split = _mmrec_split(user, degree, rng)

    features = modality_features(z_item, modalities, rng, modality_fraction,
                                 feature_noise)
    return build_hetero_data(user, item, split, num_users, num_items,
                             features, name=name)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)


def _gumbel_top_k(z_user, z_item, log_pop, degree, temperature, rng):
    r"""Samples :obj:`degree[u]` distinct items per user without replacement
    (Gumbel-top-k over the logits), chunked over users to bound memory."""
    num_users, num_items = len(z_user), len(z_item)
    chunk = max(1, (1 << 22) // num_items)
    users, items = [], []
    for start in range(0, num_users, chunk):
        end = min(start + chunk, num_users)
        logits = z_user[start:end] @ z_item.T / temperature + log_pop
        logits += rng.gumbel(size=logits.shape)
        k = int(degree[start:end].max())
        top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(logits, top, axis=1), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        keep = np.arange(k)[None, :] < degree[start:end, None]
        rows = np.broadcast_to(np.arange(start, end)[:, None], top.shape)
        users.append(rows[keep])
        items.append(top[keep])
    return np.concatenate(users), np.concatenate(items)


def _mmrec_split(user: np.ndarray, degree: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    r"""Labels each interaction 0/1/2 with MMRec's per-user random rule;
    :obj:`user` must be grouped by user, in order, :obj:`degree[u]` each."""
    perm = np.lexsort((rng.random(len(user)), user))  # shuffle within user
    start = np.cumsum(degree) - degree
    pos = np.empty(len(user), dtype=np.int64)
    pos[perm] = np.arange(len(user)) - start[user[perm]]
    n = degree[user]
    vt = np.where(n < 10, 2, (0.2 * n).astype(np.int64))
    num_valid = vt // 2
    split = np.zeros(len(user), dtype=np.int64)
    split[pos >= n - vt] = 1
    split[pos >= n - vt + num_valid] = 2
    return split


def modality_features(
    z_item: np.ndarray,
    modalities: Mapping[str, int],
    rng: np.random.Generator,
    modality_fraction: float = 0.75,
    feature_noise: float = 0.5,
) -> Dict[str, np.ndarray]:
    r"""Item features per modality: a random linear map of a random subset of
    the latent dimensions, plus Gaussian noise (see :func:`make_synthetic`).

    Args:
        z_item (np.ndarray): Item latents :obj:`[num_items, d]`.
        modalities (Mapping[str, int]): Modality name to feature dimension.
        rng (np.random.Generator): The random generator.
        modality_fraction (float): Fraction of latent dimensions per modality.
            (default: :obj:`0.75`)
        feature_noise (float): Noise standard deviation relative to the
            signal's per-dimension scale. (default: :obj:`0.5`)
    """
    num, dim = z_item.shape
    size = min(dim, max(1, math.ceil(modality_fraction * dim)))
    out = {}
    for modality, out_dim in sorted(modalities.items()):
        subset = np.sort(rng.choice(dim, size=size, replace=False))
        weight = rng.standard_normal((size, int(out_dim)))
        signal = z_item[:, subset] @ weight
        sigma = float(signal.std()) if signal.size else 1.0
        noise = rng.standard_normal((num, int(out_dim)))
        out[modality] = (signal + feature_noise * sigma * noise).astype(
            np.float32)
    return out


def add_synthetic_features(
    data: HeteroData,
    modalities: Mapping[str, int] = DEFAULT_MODALITIES,
    latent_dim: int = 16,
    modality_fraction: float = 0.75,
    feature_noise: float = 0.5,
    seed: int = 0,
) -> HeteroData:
    r"""Adds synthetic modality features to a dataset without any (e.g. the
    interaction-only Amazon sets), so multimodal code paths can run on a real
    interaction graph. The item latents are the top :obj:`latent_dim` right
    singular vectors of the degree-normalised *training* interaction matrix,
    so features carry training-split collaborative signal only. Returns a
    shallow copy of :obj:`data` with :obj:`x_<modality>` set.

    Args:
        data (HeteroData): The dataset.
        modalities (Mapping[str, int]): Modality name to feature dimension.
            (default: :obj:`{"image": 64, "text": 32}`)
        latent_dim (int): Number of singular vectors. (default: :obj:`16`)
        modality_fraction (float): See :func:`modality_features`.
        feature_noise (float): See :func:`modality_features`.
        seed (int): Seed. (default: :obj:`0`)
    """
    from scipy.sparse.linalg import svds
    rng = np.random.default_rng(seed)
    n_items = num_items(data)
    user, item = split_edge_index(data, 'train').numpy()
    n_users = int(data['user'].num_nodes)
    mat = sp.csr_matrix((np.ones(len(user)), (user, item)),
                        shape=(n_users, n_items))
    du = np.asarray(mat.sum(1)).ravel().clip(min=1)
    di = np.asarray(mat.sum(0)).ravel().clip(min=1)
    mat = sp.diags(du**-0.5) @ mat @ sp.diags(di**-0.5)
    k = max(1, min(latent_dim, min(mat.shape) - 1))
    v0 = rng.standard_normal(min(mat.shape))
    _, s, vt = svds(mat.astype(np.float64), k=k, v0=v0)
    z_item = vt.T * s  # [num_items, k]
    z_item = z_item / (np.abs(z_item).max() or 1.0)
    features = modality_features(z_item, modalities, rng, modality_fraction,
                                 feature_noise)
    out = data.__copy__()
    for modality, feat in features.items():
        out[ITEM][f'x_{modality}'] = torch.from_numpy(feat)
    return out
