"""A new model on the Recommender contract, trained by the Trainer.

FeatGCN: LightGCN whose item layer-0 embeddings add a linear projection of
the item features (every modality, concatenated), trained with BPR and an
L2 penalty; it trains on the full graph or on sampled subgraphs.

    python examples/own_model.py --epochs 30
    python examples/own_model.py --epochs 30 --sampler neighbor
"""
import argparse
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from pyg_mmrec.data import item_features, make_synthetic
from pyg_mmrec.loader import BPRBatch, Subgraph
from pyg_mmrec.models import Recommender, get_model, register_model
from pyg_mmrec.nn import LightGCNEncoder, bpr_loss, l2_reg
from pyg_mmrec.train import Trainer, build_source


@register_model('featgcn')
class FeatGCN(Recommender):
    r"""LightGCN over :math:`[\mathbf{E}_u; \mathbf{E}_i +
    \mathbf{X}\mathbf{W}]`, with :math:`\mathbf{X}` the concatenated item
    features.

    Args:
        data (HeteroData): The dataset (training interactions only).
        embedding_dim (int): Embedding size. (default: :obj:`64`)
        num_layers (int): Propagation layers. (default: :obj:`2`)
        reg_weight (float): Weight of the L2 penalty. (default: :obj:`1e-4`)
    """
    requires_features = True   # the catalogue and the CLI check the data
    supports_subgraph = True   # encode() takes a sampled Subgraph too
    repr_settings = ('embedding_dim', 'num_layers')

    def __init__(self, data, embedding_dim: int = 64, num_layers: int = 2,
                 reg_weight: float = 1e-4):
        super().__init__(data)
        self.embedding_dim, self.num_layers = embedding_dim, num_layers
        self.reg_weight = reg_weight
        self.embedding = torch.nn.Embedding(self.num_users + self.num_items,
                                            embedding_dim)
        x = torch.cat(list(item_features(data).values()), dim=-1)
        self.register_buffer('x', x, persistent=False)  # from the data
        self.project = torch.nn.Linear(x.size(-1), embedding_dim)
        self.encoder = LightGCNEncoder(num_layers, combine='mean',
                                       symmetric=True)
        # The normalised training graph (self.adj) and the full graph's
        # degrees, which normalise a sampled subgraph the same way.
        self.register_training_graph(data)
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.xavier_uniform_(self.embedding.weight)
        self.project.reset_parameters()

    def ego(self, subgraph: Optional[Subgraph] = None) -> Tensor:
        r"""Layer-0 rows of all nodes, or of the subgraph's (users first)."""
        if subgraph is None:
            users = torch.arange(self.num_users, device=self.x.device)
            items = torch.arange(self.num_items, device=self.x.device)
        else:
            users, items = subgraph.user_id, subgraph.item_id
        ids = self.embedding(torch.cat([users, self.num_users + items]))
        content = self.project(self.x[items])
        return ids + torch.cat([content.new_zeros(len(users), content.size(1)),
                                content])

    def encode(self, subgraph: Optional[Subgraph] = None
               ) -> Tuple[Tensor, Tensor]:
        x = self.encoder(self.ego(subgraph), self.training_adjacency(subgraph))
        sizes = ([self.num_users, self.num_items] if subgraph is None
                 else [subgraph.num_users, subgraph.num_items])
        return x.split(sizes)

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        user_emb, item_emb = self.encode(batch.subgraph)
        user, pos, neg = batch.node_index()  # rows of user_emb / item_emb
        u, p, n = user_emb[user], item_emb[pos], item_emb[neg]
        return {'bpr': bpr_loss((u * p).sum(-1), (u * n).sum(-1)),
                'reg': self.reg_weight * l2_reg(u, p, n)}


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description='a new model, trained')
    parser.add_argument('--epochs', type=int, default=30)
    parser.add_argument('--sampler', default='full',
                        choices=['full', 'neighbor'])
    args = parser.parse_args()

    data = make_synthetic(num_users=1000, num_items=800, seed=0)
    torch.manual_seed(0)
    model = get_model('featgcn')(data, embedding_dim=32)  # the registry
    print(model)
    source = build_source(model, data, sampler=args.sampler, batch_size=1024)
    results = Trainer(model, data, source=source, epochs=args.epochs,
                      lr=5e-3, progress=False).fit()
    print(f"best epoch {results['best_epoch']}: test recall@20 "
          f"{results['test']['recall@20']:.4f} ndcg@20 "
          f"{results['test']['ndcg@20']:.4f}")
