r"""Popularity-weighted true negatives that any batch source can use."""
from typing import Optional

import torch
from torch import Tensor

from ..graphs.pairs import PairIndex


class PopularityNegativeSampler(torch.nn.Module):
    r"""True negatives drawn with probability proportional to a power of
    the items' training degrees (word2vec's and PinSage's popularity
    negatives), restricted to the items that are not training positives of
    the user:

    .. math::
        P(n \mid u) = \frac{(d_n + \epsilon)^{\alpha}}
        {\sum_{j \notin \mathcal{N}(u)} (d_j + \epsilon)^{\alpha}},
        \qquad n \notin \mathcal{N}(u)

    Drawn by rejection, vectorised: every round redraws, from the
    unrestricted distribution, the entries whose draw is a positive of
    their user, which gives exactly the restricted distribution. After
    :obj:`max_rounds` rounds the remaining entries (users whose positives
    hold nearly all of the popularity mass) get uniform true negatives
    (:meth:`~pyg_mmrec.graphs.PairIndex.uniform_negatives`), so a draw
    always ends. Validation and test items are not excluded (that would
    leak them).

    Args:
        graph (PairIndex): The pairs negatives avoid (the training graph).
        exponent (float): :math:`\alpha`; :obj:`0` is uniform over all
            items before the restriction. (default: :obj:`0.75`)
        smoothing (float): :math:`\epsilon`, so that items without
            training users can be drawn. (default: :obj:`1.0`)
        max_rounds (int): Rejection rounds before the uniform fallback.
            (default: :obj:`20`)
    """
    def __init__(self, graph: PairIndex, exponent: float = 0.75,
                 smoothing: float = 1.0, max_rounds: int = 20):
        super().__init__()
        if smoothing <= 0:
            raise ValueError(f"'smoothing' must be positive (got "
                             f"{smoothing})")
        if max_rounds < 1:
            raise ValueError(f"'max_rounds' must be >= 1 (got {max_rounds})")
        self.exponent, self.max_rounds = float(exponent), int(max_rounds)
        self.pairs = graph.copy()
        weight = (graph.item_degree().double() + smoothing).pow(exponent)
        # Inverse-transform table: one binary search per draw (no
        # torch.multinomial, whose category limit is 2^24).
        self.register_buffer('cdf', (weight / weight.sum()).cumsum(0),
                             persistent=False)

    @property
    def num_items(self) -> int:
        return self.cdf.numel()

    def draw(self, num: int, generator: Optional[torch.Generator] = None
             ) -> Tensor:
        r""":obj:`num` items from the unrestricted popularity distribution."""
        u = torch.rand(num, generator=generator, device=self.cdf.device,
                       dtype=self.cdf.dtype) * self.cdf[-1]
        return torch.searchsorted(self.cdf, u).clamp_(max=self.num_items - 1)

    @torch.no_grad()
    def sample(self, users: Tensor,
               generator: Optional[torch.Generator] = None) -> Tensor:
        r"""One popularity-weighted true negative per entry of
        :obj:`users` :obj:`[B]`; returns item ids :obj:`[B]`."""
        users = users.long().to(self.cdf.device)
        neg = self.draw(users.numel(), generator)
        todo = self.pairs.contains(users, neg).nonzero().view(-1)
        for _ in range(self.max_rounds):
            if todo.numel() == 0:
                return neg
            neg[todo] = self.draw(todo.numel(), generator)
            todo = todo[self.pairs.contains(users[todo], neg[todo])]
        if todo.numel() > 0:
            neg[todo] = self.pairs.uniform_negatives(users[todo], generator)
        return neg

    def forward(self, users: Tensor,
                generator: Optional[torch.Generator] = None) -> Tensor:
        r"""Same as :meth:`sample`."""
        return self.sample(users, generator)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_items={self.num_items}, '
                f'exponent={self.exponent})')
