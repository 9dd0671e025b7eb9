"""VBPR computes each distinct item of a batch once: the loss terms and
gradients equal the row-by-row formula, duplicates included."""
import torch

from pyg_mmrec.data import make_synthetic
from pyg_mmrec.loader import BPRBatch
from pyg_mmrec.models import VBPR
from pyg_mmrec.nn import bpr_loss


def test_batch_with_repeated_items_matches_the_row_formula():
    data = make_synthetic(num_users=50, num_items=30, seed=0)
    torch.manual_seed(0)
    model = VBPR(data, embedding_dim=8, reg_weight=0.1)
    # items 3 and 5 repeat, as positives and as negatives
    batch = BPRBatch(torch.tensor([0, 1, 2, 3, 4]),
                     torch.tensor([3, 5, 3, 7, 5]),
                     torch.tensor([5, 9, 3, 3, 11]))
    terms = model(batch)
    sum(terms.values()).backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    u = model.user_embedding.weight[batch.user]
    gamma, W, f = (model.item_embedding.weight, model.content.weight,
                   model.features)
    p = torch.cat([gamma[batch.pos], f[batch.pos] @ W.t()], dim=-1)
    n = torch.cat([gamma[batch.neg], f[batch.neg] @ W.t()], dim=-1)
    bpr = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
    reg = 0.1 * (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / 2 / 5
    assert torch.allclose(terms['bpr'], bpr)
    (bpr + reg).backward()
    assert torch.allclose(terms['reg'], reg), (terms['reg'], reg)
    for name, param in model.named_parameters():
        assert torch.allclose(got[name], param.grad, atol=1e-6), name
