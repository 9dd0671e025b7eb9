"""The base class every recommender derives from."""
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..data.hetero import num_items, num_users
from ..train.sampler import BPRBatch


class Recommender(torch.nn.Module):
    r"""Base class of the recommenders.

    A recommender is built from a :class:`~torch_geometric.data.HeteroData`
    (it precomputes its graphs from the *training* interactions only) and
    implements

    * :meth:`forward` returning :obj:`(user_emb, item_emb)` of the current
      graph (the per-epoch training graph in training mode, the full graph
      in evaluation mode), or overrides :meth:`score` directly;
    * :meth:`loss` mapping a :class:`~pyg_mmrec.train.BPRBatch` to a dict of
      named loss terms (the trainer sums and logs them);
    * optionally :meth:`on_epoch_start` for per-epoch work (graph pruning,
      denoiser training, graph regeneration) and :meth:`on_epoch_end` for
      work between training and evaluation (e.g. sampling a generator).

    In evaluation mode the embeddings are computed once and reused by every
    :meth:`score` call until the model goes back to training mode.
    """
    #: Whether the model has parameters to fit with the trainer.
    trainable: bool = True
    #: Whether the model needs item features.
    requires_features: bool = False
    #: Trainer settings of the model's original recipe (e.g. its batch size
    #: and learning rate), used where a configuration does not set them.
    trainer_defaults: Dict[str, Any] = {}

    def __init__(self, data: HeteroData):
        super().__init__()
        self.num_users = num_users(data)
        self.num_items = num_items(data)
        self._embedding_cache: Optional[Tuple[Tensor, Tensor]] = None

    def forward(self) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError(
            f"{self.__class__.__name__} must implement forward() or score()")

    def loss(self, batch: BPRBatch) -> Dict[str, Tensor]:
        raise NotImplementedError(
            f"{self.__class__.__name__} is trainable but has no loss()")

    def on_epoch_start(self, epoch: int) -> None:
        r"""Hook called by the trainer before each training epoch."""

    def on_epoch_end(self, epoch: int) -> None:
        r"""Hook called by the trainer after each training epoch, before
        evaluation."""

    def train(self, mode: bool = True) -> 'Recommender':
        self._embedding_cache = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._embedding_cache = None
        return super().load_state_dict(*args, **kwargs)

    def embeddings(self) -> Tuple[Tensor, Tensor]:
        r"""The :obj:`(user_emb, item_emb)` used for scoring; cached in
        evaluation mode."""
        if self.training:
            return self()
        if self._embedding_cache is None:
            with torch.no_grad():
                self._embedding_cache = self()
        return self._embedding_cache

    def score(self, users: Tensor) -> Tensor:
        r"""Scores of all items for the given users, :obj:`[B, num_items]`."""
        user_emb, item_emb = self.embeddings()
        return user_emb[users] @ item_emb.t()

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_users={self.num_users}, '
                f'num_items={self.num_items})')

