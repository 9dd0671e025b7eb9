"""FMCNS."""
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..graphs import train_graph
from ..loader import BPRBatch, Subgraph
from ..nn import CausalNegativeSampler, FlowMatchingGenerator, item_frequency
from ..nn.losses import bpr_loss
from .freedom import FREEDOM
from .registry import register_model


def last_occurrence(index: Tensor) -> Tuple[Tensor, Tensor]:
    r"""The unique values of :obj:`index` and the position of the last
    occurrence of each (what "the last write wins" keeps)."""
    uniq, inverse = torch.unique(index, return_inverse=True)
    pos = torch.arange(index.numel(), device=index.device)
    last = torch.full_like(uniq, -1).scatter_reduce(0, inverse, pos, 'amax')
    return uniq, last


@register_model('fmcns')
class FMCNS(FREEDOM):
    r"""FMCNS from "Flow Matching with Causal-aware Negative Sampling for
    Multimodal Recommendation" (`code <https://github.com/zhaxinji/FMCNS>`_).

    FREEDOM's frozen kNN item graph, per-epoch degree-sensitive edge pruning
    and LightGCN, extended with

    * a flow-matching generator
      (:class:`~pyg_mmrec.nn.FlowMatchingGenerator`) that reconstructs item
      ID embeddings from a frequency-based Bernoulli prior, conditioned on
      every modality's projected features. Its prediction
      :math:`\hat{\mathbf{x}}_i` replaces part of the graph-smoothed item
      input of LightGCN for the batch items,
      :math:`\mathbf{h}^{flow}_i = w \hat{\mathbf{x}}_i + (1 - w)
      \mathbf{h}_i`, and a generated embedding of every item, sampled after
      each epoch, does so at evaluation;
    * causal-aware hard negatives
      (:class:`~pyg_mmrec.nn.CausalNegativeSampler`) found around the
      debiased anchor :math:`m_p \mathbf{g}_p + (1 - m_p) \mathbf{e}_p`, with
      the popularity intervention
      :math:`m_p = \sigma(-\beta (f_p - \mu_f) / s_f)`.

    .. math::
        \mathcal{L} = (1 - \lambda) \mathcal{L}_{BPR}(u, p, n_{uniform})
        + \lambda \mathcal{L}_{BPR}(u, p, n_{causal})
        + \gamma \mathcal{L}_{flow}

    Causal negatives start after the first epoch (once a generated
    embedding exists); before that :math:`n_{causal} = n_{uniform}`.

    With :obj:`flow_weight=0` and :obj:`flow_mix=0` the flow is off
    altogether (the "no flow" ablation): no flow loss, no sampling, and the
    causal anchor is the item's graph embedding :math:`\mathbf{e}_p` alone
    (an untrained generator would otherwise still steer the negatives).

    Differences from the original code, and why:

    * The flow target (the item ID embeddings) is detached: otherwise the
      flow loss pulls the ID embeddings towards the denoiser's output.
      :obj:`faithful=True` keeps the original's undetached target.
    * The sampler integrates from the prior at :math:`t = 0` with Euler
      steps and no binarisation; the original starts at :math:`t = 0.8` and
      binarises a state whose targets are about :math:`\pm 0.03`, which
      collapses it to the prior bits. :obj:`faithful=True` reproduces it.
    * Every modality present conditions the generator (TikTok: image and
      audio), not a fixed image + text pair; FREEDOM's generalised modality
      weights build the item graph (image 0.1, the rest share 0.9).
    * The raw feature tables are frozen (the original trains copies of
      them); the projections are trained. This saves the Adam state of a
      :obj:`[I, 4096]` table and keeps the kNN graph and the conditions
      consistent.
    * Training items are excluded from the candidate pool with a sorted-key
      lookup, never a dense :obj:`U x I` matrix (3.6 GB on Clothing).
    * When an item occurs several times in a batch, the last occurrence's
      prediction is used, deterministically (the original's in-place write
      leaves it to the backend).
    * The original's unused :obj:`FlowModel` (parameters in the optimiser,
      never called) is not carried over.
    * Model selection is on validation; the original chose
      :obj:`flow_weight` on the test set.
    * Edge pruning draws with the Gumbel-top-k trick (the same distribution
      as :obj:`torch.multinomial` without replacement).

    The trainer defaults to the original's batch size (512) and learning
    rate (:obj:`5e-4`) where a configuration does not set them
    (``pyg_mmrec/config/models/fmcns.yaml``).

    Args:
        data (HeteroData): The dataset; it must carry item features.
        flow_weight (float): :math:`\gamma`; the original searches
            :obj:`{0.5, 1, 2}`. (default: :obj:`0.5`)
        flow_mix (float): :math:`w`, the generated share of the item input.
            (default: :obj:`0.5`)
        causal_weight (float): :math:`\lambda`, the causal BPR share.
            (default: :obj:`0.8`)
        beta (float): Popularity intervention strength. (default: :obj:`3.0`)
        num_candidates (int, optional): Candidate pool size per batch.
            (default: :obj:`min(int(0.15 I), 1000)`)
        sample_k (float): Share of the pool kept as hard candidates.
            (default: :obj:`0.1`)
        num_steps (int): Sampler steps. (default: :obj:`10`)
        faithful (bool): Reproduce the original's undetached flow target and
            its sampler (start at step 8 of 10, binarise). (default:
            :obj:`False`)
        **kwargs: The arguments of :class:`FREEDOM` (:obj:`embedding_dim`,
            :obj:`knn_k`, :obj:`modality_weights`, :obj:`num_mm_layers`,
            :obj:`dropout`, ...), with the original's defaults where they
            differ: :obj:`num_ui_layers=3` and :obj:`reg_weight=0` (no
            feature BPR terms).
    """
    # Unlike in FREEDOM, the projections condition the generator (through
    # a LayerNorm), so their bias matters: keep it, as the original does.
    feature_projection = 'linear'
    # The causal sampler ranks every item and the generator mixes into
    # every item's input: not local to a sampled subgraph.
    supports_subgraph = False

    repr_settings = ('modalities', 'embedding_dim', 'knn_k', 'faithful')

    def __init__(
        self,
        data: HeteroData,
        flow_weight: float = 0.5,
        flow_mix: float = 0.5,
        causal_weight: float = 0.8,
        beta: float = 3.0,
        num_candidates: Optional[int] = None,
        sample_k: float = 0.1,
        num_steps: int = 10,
        faithful: bool = False,
        **kwargs: Any,
    ):
        kwargs.setdefault('num_ui_layers', 3)
        kwargs.setdefault('reg_weight', 0.0)
        super().__init__(data, **kwargs)
        embedding_dim = self.embedding_dim
        for name, value in (('flow_mix', flow_mix),
                            ('causal_weight', causal_weight)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.flow_weight, self.flow_mix = flow_weight, flow_mix
        self.causal_weight, self.num_steps = causal_weight, num_steps
        self.faithful = faithful
        #: Whether the flow generator takes part (off for the ablation
        #: :obj:`flow_weight = flow_mix = 0`).
        self.use_flow = flow_weight > 0 or flow_mix > 0
        self.flow = FlowMatchingGenerator(
            embedding_dim, num_conditions=len(self.features.modalities))
        graph = train_graph(data)
        freq = item_frequency(graph)
        self.register_buffer('item_freq', freq, persistent=False)
        pool = (num_candidates if num_candidates is not None else
                min(int(0.15 * self.num_items), 1000))
        pool = max(1, min(pool, self.num_items))
        self.causal_sampler = CausalNegativeSampler(
            graph, freq=freq, beta=beta, num_candidates=pool,
            top_k=max(1, int(sample_k * pool)))
        # The generated item embeddings of the last epoch (checkpointed).
        self.register_buffer('generated',
                             torch.zeros(self.num_items, embedding_dim))
        self.register_buffer('has_generated', torch.tensor(False))
        # Whether an epoch has ended (causal negatives start then).
        self.register_buffer('causal_ready', torch.tensor(False))
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        self.flow.reset_parameters()

    def conditions(self, items: Optional[Tensor] = None) -> List[Tensor]:
        r"""The projected features of every modality, for :obj:`items` (all
        items when :obj:`None`)."""
        return list(self.features(items).values())

    @torch.no_grad()
    def generate(self) -> Tensor:
        r"""Samples the generator for every item and stores the result."""
        self.generated = self.flow.sample(
            self.conditions(), self.item_freq, num_steps=self.num_steps,
            start_step=self.num_steps - 2 if self.faithful else 0,
            binarize=self.faithful)
        self.has_generated.fill_(True)
        return self.generated

    def on_epoch_end(self, epoch: int) -> None:
        if self.use_flow:
            self.generate()
        self.causal_ready.fill_(True)

    def encode(self, subgraph: Optional[Subgraph] = None
               ) -> Tuple[Tensor, Tensor]:
        r"""Embeddings with the generated item embeddings mixed into every
        item's input (evaluation); in training mode, without the generator
        (:meth:`forward` mixes the batch's flow predictions instead)."""
        h = self.item_graph_embedding()
        if self.training:
            user, item = self.propagate(h, self.train_adj)
        elif not self.use_flow:
            user, item = self.propagate(h, self.adj)
        else:
            if not bool(self.has_generated):
                self.generate()
            mixed = self.flow_mix * self.generated + (1 - self.flow_mix) * h
            user, item = self.propagate(mixed, self.adj)
        return user, item + h

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        h = self.item_graph_embedding()
        item_input, flow_term, terms = h, None, {}
        if self.use_flow:
            items = torch.cat([batch.pos, batch.neg])
            target = self.item_embedding.weight[items]
            flow_loss, x_hat = self.flow.loss(
                target, self.conditions(items), self.item_freq[items],
                detach_target=not self.faithful)
            uniq, last = last_occurrence(items)
            mixed = (self.flow_mix * x_hat[last] +
                     (1 - self.flow_mix) * h[uniq])
            item_input = h.index_put((uniq, ), mixed)
            flow_term = self.flow_weight * flow_loss
        user_emb, item_emb = self.propagate(item_input, self.train_adj)
        item_emb = item_emb + h

        u = user_emb[batch.user]
        pos_score = (u * item_emb[batch.pos]).sum(-1)
        bpr_uniform = bpr_loss(pos_score, (u * item_emb[batch.neg]).sum(-1))
        if bool(self.causal_ready) and self.causal_weight > 0:
            neg = self.causal_sampler.sample(
                batch.user, batch.pos, item_emb.detach(),
                self.generated if self.use_flow else None)
            bpr_causal = bpr_loss(pos_score, (u * item_emb[neg]).sum(-1))
            terms['bpr'] = (1 - self.causal_weight) * bpr_uniform
            terms['bpr_causal'] = self.causal_weight * bpr_causal
        else:
            terms['bpr'] = bpr_uniform
        if flow_term is not None:
            terms['flow'] = flow_term
        terms.update(self.feature_bpr_terms(u, batch))
        return terms
