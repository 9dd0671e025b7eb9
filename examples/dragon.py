"""DRAGON (dual representations on homogeneous graphs), a baseline, trained
with a plain PyTorch loop: the user co-occurrence graph is built on the fly
from the training interactions (MMRec needs an offline script for it), and
each epoch start redraws the padding of users with few co-neighbours.

    python examples/dragon.py                     # synthetic data
    python examples/dragon.py --dataset tiktok --data-root ../shared/data
"""
import argparse
import copy

import torch

from pyg_mmrec.data import load_dataset, make_synthetic
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.models import DRAGON
from pyg_mmrec.train import Evaluator

parser = argparse.ArgumentParser()
parser.add_argument('--dataset', default='synthetic')
parser.add_argument('--data-root', default=None)
parser.add_argument('--epochs', type=int, default=1000)
args = parser.parse_args()

torch.manual_seed(0)
data = (make_synthetic() if args.dataset == 'synthetic' else
        load_dataset(args.dataset, root=args.data_root))

# The authors' Baby settings (lr 1e-4, reg 1e-3; baselines.md 5.8).
model = DRAGON(data, num_layers=2, num_mm_layers=1, knn_k=10, user_k=40,
               reg_weight=1e-3)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
source = model.batch_source(train_graph(data), batch_size=2048)
evaluator = Evaluator(data)
generator = torch.Generator().manual_seed(0)


def train(epoch: int) -> float:
    model.train()
    model.on_epoch_start(epoch)
    total = count = 0
    for batch in source.batches(epoch, generator):
        optimizer.zero_grad()
        loss = sum(model(batch).values())  # the model's named loss terms
        loss.backward()
        optimizer.step()
        total += loss.item() * batch.user.numel()
        count += batch.user.numel()
    model.on_epoch_end(epoch)
    return total / count


@torch.no_grad()
def test(split: str) -> dict:
    model.eval()  # encodes once, then scores every evaluated user
    return evaluator.evaluate(model.score, split)


best_recall, best_state = -1.0, None
for epoch in range(1, args.epochs + 1):
    loss = train(epoch)
    recall = test('val')['recall@20']
    if recall > best_recall:  # model selection on validation only
        best_recall, best_state = recall, copy.deepcopy(model.state_dict())
    print(f'Epoch: {epoch:03d}, Loss: {loss:.4f}, '
          f'Val Recall@20: {recall:.4f}')

model.load_state_dict(best_state)
result = test('test')
print(f"Test Recall@20: {result['recall@20']:.4f}, "
      f"NDCG@20: {result['ndcg@20']:.4f}")
