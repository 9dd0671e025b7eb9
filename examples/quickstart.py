"""From a dataset to top-10 recommendations, in Python.

    python examples/quickstart.py --epochs 30
    python examples/quickstart.py --dataset tiktok --data-root ../shared/data
"""
import argparse
import logging

import torch

from pyg_mmrec.data import load_dataset, make_synthetic
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.models import get_model
from pyg_mmrec.recommend import top_k
from pyg_mmrec.train import Trainer

parser = argparse.ArgumentParser(description='pyg_mmrec quickstart')
parser.add_argument('--model', default='freedom')
parser.add_argument('--dataset', default=None,
                    help='a dataset under --data-root (default: synthetic)')
parser.add_argument('--data-root', default=None)
parser.add_argument('--epochs', type=int, default=20)
parser.add_argument('--lr', type=float, default=5e-3)
parser.add_argument('--output-dir', default='runs/quickstart')
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format='%(message)s')  # epoch lines

# 1. The data: a HeteroData with user and item nodes, one feature tensor per
#    item modality, and the (user, interacts, item) edges with their
#    train / val / test masks.
if args.dataset is None:
    data = make_synthetic(num_users=1000, num_items=800, seed=0)
else:
    data = load_dataset(args.dataset, root=args.data_root)
print(data)

# 2. A model from the registry, built from the data: it precomputes its
#    graphs (normalised adjacency, modality kNN graphs) from the training
#    interactions only.
torch.manual_seed(0)
model = get_model(args.model)(data)
print(model)

# 3. Training: the epoch is selected on validation Recall@20 (patience 20),
#    and the test metrics are those of that epoch. The output folder gets
#    last.pt (resumable), best.pt (the selected epoch's weights) and
#    results.json.
trainer = Trainer(model, data, epochs=args.epochs, lr=args.lr,
                  checkpoint_dir=args.output_dir, progress=False)
results = trainer.fit()
print(f"best epoch {results['best_epoch']} of {results['epochs_run']}; "
      f"test at that epoch ({results['protocol']}):")
for key in ('recall@10', 'recall@20', 'ndcg@20'):
    print(f"  {key:>10} {results['test'][key]:.4f}")

# 4. Top-10 items for a few users with the selected epoch's weights, never
#    one of their training items.
best = torch.load(f'{args.output_dir}/best.pt', weights_only=True)
model.load_state_dict(best)
model.eval()
users = torch.tensor([0, 1, 2])
items, scores = top_k(model, users, k=10, exclude=train_graph(data))
for user, row in zip(users.tolist(), items.tolist()):
    print(f"user {user}: {row}")
