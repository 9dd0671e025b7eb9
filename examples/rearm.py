"""REARM (refined contrastive learning and homography relations) trained
with a plain PyTorch loop: its user-user and item-item homography graphs are
built once from the training interactions and the features, and AdamW
trains the recommender with its weight decay, as the original.

    python examples/rearm.py                      # synthetic data
    python examples/rearm.py --dataset tiktok --data-root ../shared/data
"""
import argparse
import copy

import torch

from pyg_mmrec.data import load_dataset, make_synthetic
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.models import REARM
from pyg_mmrec.train import Evaluator

parser = argparse.ArgumentParser()
parser.add_argument('--dataset', default='synthetic')
parser.add_argument('--data-root', default=None)
parser.add_argument('--epochs', type=int, default=200)
args = parser.parse_args()

torch.manual_seed(0)
data = (make_synthetic() if args.dataset == 'synthetic' else
        load_dataset(args.dataset, root=args.data_root))

# Baby's settings (models.md 4.6) on a smaller model; TikTok's raw image rows
# need unit-normalised features (experiments/configs/tiktok.yaml).
model = REARM(data, num_layers=2, rank=3, user_knn_k=10, item_knn_k=5,
              normalize_features=True)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3,
                              weight_decay=5e-4)
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
