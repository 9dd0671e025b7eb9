import pytest
import torch
import torch.nn.functional as F

from pyg_mmrec.nn.contrastive import noisy_view_info_nce
from pyg_mmrec.nn.view_contrast import multi_level_info_nce, view_pair_info_nce


def naive_info_nce(anchor, target, temperature=0.5, index=None):
    a, b = F.normalize(anchor, dim=-1), F.normalize(target, dim=-1)
    if index is None:
        index = torch.arange(a.size(0))
    return F.cross_entropy(a[index] @ b.T / temperature, index)


def views_of(num, n=9, m=7, d=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, d, generator=gen), torch.randn(m, d,
                                                           generator=gen))
            for _ in range(num)]


@pytest.mark.parametrize('num_views', [1, 2, 3])
def test_view_pair_info_nce_sums_every_pair_in_order(num_views):
    views = views_of(num_views)
    users, items = torch.tensor([0, 4, 4]), torch.tensor([6, 1])
    loss = view_pair_info_nce(views, users, items, temperature=0.3,
                              chunk_size=2)
    if num_views < 2:
        assert loss is None
        return
    expected = None
    for a in range(num_views):
        for b in range(a + 1, num_views):
            term = (naive_info_nce(views[a][0], views[b][0], 0.3, users) +
                    naive_info_nce(views[a][1], views[b][1], 0.3, items))
            expected = term if expected is None else expected + term
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize('anchors', [False, True])
def test_multi_level_info_nce_is_the_sum_of_its_parts(anchors):
    fused, *branches = views_of(3, seed=1)
    users = torch.tensor([1, 2]) if anchors else None
    items = torch.tensor([0, 5, 6]) if anchors else None
    levels = [0, 0, 1, 2]
    torch.manual_seed(0)
    loss = multi_level_info_nce(fused, branches, levels, users, items,
                                temperature=0.4)
    torch.manual_seed(0)
    expected = None
    for user, item in branches:
        for term in (naive_info_nce(fused[0], user, 0.4, users),
                     naive_info_nce(fused[1], item, 0.4, items),
                     noisy_view_info_nce(item, levels, 0.4, index=items)):
            expected = term if expected is None else expected + term
    torch.testing.assert_close(loss, expected)
