r"""Interest clusters of items from their features (GenRec-V1's
:obj:`MultimodalCluster`): standardised features, KMeans, and the optional
second-difference elbow for the number of clusters."""
from typing import Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

#: The original's hard-coded cluster counts per dataset and modality
#: (models.md 5.1).
GENREC_CLUSTERS = {
    'tiktok': {'image': 18, 'text': 59, 'audio': 46},
    'baby': {'image': 6, 'text': 11},
    'sports': {'image': 9, 'text': 12},
}


def _standardised(x: Tensor) -> np.ndarray:
    from sklearn.preprocessing import StandardScaler
    if x.dim() != 2 or x.size(0) == 0:
        raise ValueError(f"'x' must be a non-empty [N, d] tensor "
                         f"(got shape {tuple(x.shape)})")
    return StandardScaler().fit_transform(
        x.detach().cpu().double().numpy())


def _kmeans(z: np.ndarray, k: int, seed: int):
    from sklearn.cluster import KMeans
    if not 1 <= k <= z.shape[0]:
        raise ValueError(f"the number of clusters must be in [1, "
                         f"{z.shape[0]}] (got {k})")
    return KMeans(n_clusters=k, random_state=seed, n_init=10).fit(z)


def kmeans_clusters(x: Tensor, num_clusters: int, seed: int = 0) -> Tensor:
    r"""The KMeans cluster of every row of :obj:`x` :obj:`[N, d]` after
    scikit-learn's :class:`~sklearn.preprocessing.StandardScaler`
    (deterministic for a :obj:`seed`), as a :obj:`long` tensor :obj:`[N]`
    on :obj:`x`'s device."""
    labels = _kmeans(_standardised(x), num_clusters, seed).labels_
    return torch.from_numpy(labels.astype(np.int64)).to(x.device)


def elbow_num_clusters(x: Tensor, candidates: Sequence[int],
                       seed: int = 0) -> int:
    r"""The elbow of the KMeans inertia :math:`W(k)` over increasing
    :obj:`candidates` :math:`k_1 < \ldots < k_n` (at least three): the
    :math:`k_j` with the largest second difference
    :math:`W(k_{j-1}) - 2 W(k_j) + W(k_{j+1})`."""
    ks = list(candidates)
    if len(ks) < 3 or any(b <= a for a, b in zip(ks, ks[1:])):
        raise ValueError(f"'candidates' must hold at least three increasing "
                         f"cluster counts (got {ks})")
    z = _standardised(x)
    inertia = np.array([_kmeans(z, k, seed).inertia_ for k in ks])
    second = inertia[:-2] - 2 * inertia[1:-1] + inertia[2:]
    return ks[1 + int(np.argmax(second))]


def modality_clusters(features: Mapping[str, Tensor],
                      num_clusters: Mapping[str, int],
                      auto_candidates: Optional[Sequence[int]] = None,
                      seed: int = 0) -> Mapping[str, Tensor]:
    r"""Each modality's own item clusters: :func:`kmeans_clusters` with
    :obj:`num_clusters[m]`, or with the :func:`elbow_num_clusters` of
    :obj:`auto_candidates` when given."""
    out = {}
    for m, x in features.items():
        if auto_candidates is not None:
            k = elbow_num_clusters(x, auto_candidates, seed)
        elif m in num_clusters:
            k = int(num_clusters[m])
        else:
            raise ValueError(f"'num_clusters' has no count for modality "
                             f"{m!r} (got {dict(num_clusters)})")
        out[m] = kmeans_clusters(x, k, seed)
    return out
