"""MDMNS (modal-aware diffusion with multi-level negatives) trained with
plain PyTorch loops: each epoch first trains the modality denoisers (the
model's stage) and regenerates its user-item graphs, then the recommender.

    python examples/mdmns.py                      # synthetic data
    python examples/mdmns.py --dataset tiktok --data-root ../shared/data
"""
import argparse
import copy

import torch

from pyg_mmrec.data import load_dataset, make_synthetic
from pyg_mmrec.graphs import train_graph
from pyg_mmrec.models import MDMNS
from pyg_mmrec.train import Evaluator

parser = argparse.ArgumentParser()
parser.add_argument('--dataset', default='synthetic')
parser.add_argument('--data-root', default=None)
parser.add_argument('--epochs', type=int, default=50)
args = parser.parse_args()

torch.manual_seed(0)
data = (make_synthetic() if args.dataset == 'synthetic' else
        load_dataset(args.dataset, root=args.data_root))

# The settings of the original's TikTok command (a smaller embedding).
model = MDMNS(data, embedding_dim=64, num_layers=1, trans=1, reg_weight=1e-4,
              ssl_weight=1e-2, temperature=0.5, cl_method=1, keep_rate=0.5)
# The denoisers are a stage with their own optimiser; the recommender's
# optimiser takes every other parameter.
(stage, ) = model.stages()
stage_optimizer = torch.optim.Adam(stage.parameters(),
                                   **stage.optimizer_kwargs)
in_stage = {id(p) for p in stage.parameters()}
optimizer = torch.optim.Adam(
    [p for p in model.parameters() if id(p) not in in_stage], lr=1e-3)
source = model.batch_source(train_graph(data), batch_size=1024)
evaluator = Evaluator(data)
generator = torch.Generator().manual_seed(0)


def train_denoisers(epoch: int) -> float:
    stage.before()  # the projected features, fixed during the stage
    total = 0.0
    for users in stage.source.batches(epoch, generator):
        stage_optimizer.zero_grad()
        loss = sum(stage.loss(users).values())  # one term per modality
        loss.backward()
        stage_optimizer.step()
        total += loss.item()
    stage.after()  # regenerates the modality graphs
    return total / len(stage.source)


def train(epoch: int) -> float:
    model.train()
    model.on_epoch_start(epoch)
    total = count = 0
    for batch in source.batches(epoch, generator):
        optimizer.zero_grad()
        loss = sum(model(batch).values())  # bpr, reg, cl
        loss.backward()
        optimizer.step()
        total += loss.item() * batch.user.numel()
        count += batch.user.numel()
    model.on_epoch_end(epoch)
    return total / count


@torch.no_grad()
def test(split: str) -> dict:
    model.eval()
    return evaluator.evaluate(model.score, split)


best_recall, best_state = -1.0, None
for epoch in range(1, args.epochs + 1):
    diffusion_loss = train_denoisers(epoch)
    loss = train(epoch)
    recall = test('val')['recall@20']
    if recall > best_recall:  # model selection on validation only
        best_recall, best_state = recall, copy.deepcopy(model.state_dict())
    print(f'Epoch: {epoch:03d}, Diffusion: {diffusion_loss:.2f}, '
          f'Loss: {loss:.4f}, Val Recall@20: {recall:.4f}')

model.load_state_dict(best_state)
result = test('test')
print(f"Test Recall@20: {result['recall@20']:.4f}, "
      f"NDCG@20: {result['ndcg@20']:.4f}")
