"""FMCNS."""
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from ..graphs import train_graph
from ..graphs.pairs import PairIndex
from ..loader import BPRBatch, NeighborSource, PoolNeighborSource, Subgraph
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

    A full-graph training step reads the embeddings of its users, positives,
    negatives and causal pool only, so LightGCN computes each layer on their
    receptive field in the pruned graph
    (:meth:`full_graph_rows`; the same values as the whole propagation).

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

    **Mini-batch training** (:obj:`sampler='neighbor'`, a
    :class:`~pyg_mmrec.loader.Subgraph` per batch) keeps every part local
    to the batch:

    * LightGCN runs on the subgraph with FREEDOM's global degrees
      (:meth:`~pyg_mmrec.models.FREEDOM.subgraph_adjacency`), from the
      item-graph embeddings :math:`\mathbf{h}` of the subgraph's items;
    * the flow loss and the mixed input cover the batch's positives and
      negatives, at their local positions (the generator is per item, so
      its term equals the full-graph one for the same items);
    * the causal pool is drawn by the full-graph rule
      (:meth:`~pyg_mmrec.nn.CausalNegativeSampler.pool_positions`:
      :math:`N_c` uniformly among the items the batch has embeddings for),
      among the subgraph's items (in id order) instead of all items, and
      ranked by the same score; a pool smaller than :math:`N_c` keeps the
      same top share. A subgraph holding every item, in any local order,
      therefore draws exactly the full-graph pool. The subgraphs hold
      :obj:`pool_extra` more items per batch, drawn by
      :obj:`pool_exponent` and added with their training edges to the
      sampled users (:class:`~pyg_mmrec.loader.PoolNeighborSource`): the
      sampled neighbourhood alone favours popular items, and these reach
      the others. They join the subgraph rather than being scored on a
      cheaper representation so that every candidate is scored in the
      space of the positives' and negatives' embeddings (after the same
      convolution), and no all-item table is read. Training positives are
      never negatives (rows without a valid candidate take the batch's own
      negative);
    * :meth:`generate` (after each epoch) streams over item blocks.

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
        pool_extra (int): Mini-batch training only: items :math:`M` per
            batch that join the sampled subgraph, with their training
            edges, as candidates of the causal pool. (default: :obj:`256`)
        pool_exponent (float): Mini-batch training only: they are drawn
            with probability :math:`\propto (d_i + 1)^{\alpha}`, this
            :math:`\alpha` (:obj:`0`: uniform, as the original's pool).
            (default: :obj:`0.0`)
        **kwargs: The arguments of :class:`FREEDOM` (:obj:`embedding_dim`,
            :obj:`knn_k`, :obj:`modality_weights`, :obj:`num_mm_layers`,
            :obj:`dropout`, ...), with the original's defaults where they
            differ: :obj:`num_ui_layers=3` and :obj:`reg_weight=0` (no
            feature BPR terms).
    """
    # Unlike in FREEDOM, the projections condition the generator (through
    # a LayerNorm), so their bias matters: keep it, as the original does.
    feature_projection = 'linear'
    supports_subgraph = True
    #: Items per block of :meth:`generate` (Clothing, the largest dataset
    #: here, has 23,033 items: one block, all items at once, as before).
    generate_block_size: int = 32768

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
        pool_extra: int = 256,
        pool_exponent: float = 0.0,
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
        if pool_extra < 0:
            raise ValueError(f"pool_extra must be >= 0, got {pool_extra}")
        self.pool_extra, self.pool_exponent = int(pool_extra), pool_exponent
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
        r"""Samples the generator for every item and stores the result,
        in blocks of :attr:`generate_block_size` items (one block, all
        items at once, when there are fewer): memory bounded by the block,
        whatever the number of items (the generator is per item)."""
        block = self.generate_block_size
        for start in range(0, self.num_items, block):
            items = (None if self.num_items <= block else torch.arange(
                start, min(start + block, self.num_items),
                device=self.generated.device))
            freq = self.item_freq if items is None else self.item_freq[items]
            out = self.flow.sample(
                self.conditions(items), freq, num_steps=self.num_steps,
                start_step=self.num_steps - 2 if self.faithful else 0,
                binarize=self.faithful)
            if items is None:
                self.generated = out
            else:
                self.generated[items] = out
        self.has_generated.fill_(True)
        return self.generated

    def on_epoch_end(self, epoch: int) -> None:
        if self.use_flow:
            self.generate()
        self.causal_ready.fill_(True)

    def propagate_subgraph(self, item_input: Tensor,
                           subgraph: Subgraph) -> Tuple[Tensor, Tensor]:
        r"""LightGCN over :obj:`subgraph`
        (:meth:`~pyg_mmrec.models.FREEDOM.subgraph_adjacency`: the
        global degrees of the graph the full-graph path propagates on) from
        its users' ID embeddings and :obj:`item_input` :obj:`[S, d]` of its
        items."""
        x = torch.cat([self.user_embedding(subgraph.user_id), item_input])
        return self.encoder(x, self.subgraph_adjacency(subgraph)).split(
            [subgraph.num_users, subgraph.num_items])

    def encode(self, subgraph: Optional[Subgraph] = None
               ) -> Tuple[Tensor, Tensor]:
        r"""Embeddings with the generated item embeddings mixed into every
        item's input (evaluation); in training mode, without the generator
        (:obj:`forward` mixes the batch's flow predictions instead). On a
        :obj:`subgraph`, the same for its users and items: the item input
        is the item-graph embedding of its items (and their rows of the
        generated embeddings in evaluation)."""
        items = None if subgraph is None else subgraph.item_id
        h = self.item_graph_embedding(items)
        if self.training:
            item_input, adj = h, self.train_adj
        elif not self.use_flow:
            item_input, adj = h, self.adj
        else:
            if not bool(self.has_generated):
                self.generate()
            generated = (self.generated if items is None else
                         self.generated[items])
            item_input = self.flow_mix * generated + (1 - self.flow_mix) * h
            adj = self.adj
        if subgraph is None:
            user, item = self.propagate(item_input, adj)
        else:
            user, item = self.propagate_subgraph(item_input, subgraph)
        return user, item + h

    def neighbor_source(self, graph: PairIndex, batch_size: int,
                        **kwargs) -> NeighborSource:
        r"""Sampled subgraphs of the edges the epoch's pruning kept
        (:meth:`~pyg_mmrec.models.FREEDOM.neighbor_source`) that also hold
        :obj:`pool_extra` items per batch
        (:class:`~pyg_mmrec.loader.candidate_pool.PoolNeighborSource`,
        drawn with :obj:`pool_exponent`), candidates of the causal pool; a
        plain :class:`~pyg_mmrec.loader.NeighborSource` when
        :obj:`pool_extra` is 0 or the causal negatives are off. Keyword
        arguments are those of
        :meth:`~pyg_mmrec.models.Recommender.neighbor_source`."""
        kwargs['epoch_edges'] = self.sampling_edges
        if self.pool_extra == 0 or self.causal_weight == 0:
            return NeighborSource(graph, batch_size, **kwargs)
        return PoolNeighborSource(graph, batch_size, self.pool_extra,
                                  self.pool_exponent, **kwargs)

    def forward(self, batch: BPRBatch) -> Dict[str, Tensor]:
        sub = batch.subgraph
        # Rows of the batch's users and items in this batch's embeddings:
        # global ids on the full graph, local positions on a subgraph.
        user, pos, neg = batch.node_index()
        h = self.item_graph_embedding(None if sub is None else sub.item_id)
        item_input, flow_term, terms = h, None, {}
        if self.use_flow:
            items = torch.cat([batch.pos, batch.neg])
            target = self.item_embedding.weight[items]
            flow_loss, x_hat = self.flow.loss(
                target, self.conditions(items), self.item_freq[items],
                detach_target=not self.faithful)
            uniq, last = last_occurrence(torch.cat([pos, neg]))
            mixed = (self.flow_mix * x_hat[last] +
                     (1 - self.flow_mix) * h[uniq])
            item_input = h.index_put((uniq, ), mixed)
            flow_term = self.flow_weight * flow_loss
        causal = bool(self.causal_ready) and self.causal_weight > 0
        if sub is None:
            u, pos_emb, neg_emb, hard_emb = self.full_graph_rows(
                batch, item_input, h, causal)
        else:
            user_emb, item_emb = self.propagate_subgraph(item_input, sub)
            item_emb = item_emb + h
            u, pos_emb, neg_emb = user_emb[user], item_emb[pos], item_emb[neg]
            hard_emb = item_emb[self.causal_negatives(
                batch, item_emb.detach(), pos, neg)] if causal else None

        pos_score = (u * pos_emb).sum(-1)
        bpr_uniform = bpr_loss(pos_score, (u * neg_emb).sum(-1))
        if hard_emb is not None:
            bpr_causal = bpr_loss(pos_score, (u * hard_emb).sum(-1))
            terms['bpr'] = (1 - self.causal_weight) * bpr_uniform
            terms['bpr_causal'] = self.causal_weight * bpr_causal
        else:
            terms['bpr'] = bpr_uniform
        if flow_term is not None:
            terms['flow'] = flow_term
        terms.update(self.feature_bpr_terms(u, batch))
        return terms

    def full_graph_rows(self, batch: BPRBatch, item_input: Tensor, h: Tensor,
                        causal: bool) -> Tuple[Tensor, ...]:
        r"""The embeddings :obj:`[B, d]` of the batch's users, positives,
        negatives and causal hard negatives (:obj:`None` when
        :obj:`causal` is off) on the full pruned graph, from the item
        input :obj:`item_input` and the item-graph embeddings :obj:`h`
        (:obj:`[I, d]` each).

        The causal pool
        (:meth:`~pyg_mmrec.nn.CausalNegativeSampler.pool_positions` of all
        items) is drawn first, so that LightGCN runs
        on the receptive field of the rows the batch reads only
        (:meth:`~pyg_mmrec.models.FREEDOM.propagate_rows`: users,
        positives, negatives, pool), and ranked as by
        :meth:`~pyg_mmrec.nn.CausalNegativeSampler.sample`, with the same
        random draws in the same order (LightGCN draws nothing between the
        pool and the ranking). A row whose pool holds only training items
        of its user gets a uniform true negative, propagated on its own."""
        sampler, size = self.causal_sampler, batch.pos.numel()
        pool = (sampler.pool_positions(self.num_items, device=h.device)
                if causal else batch.pos.new_empty(0))
        items = torch.cat([batch.pos, batch.neg, pool])
        u, item_emb = self.propagate_rows(item_input, self.train_adj,
                                          batch.user, items)
        pos_emb, neg_emb, pool_emb = (
            item_emb + h.index_select(0, items)).split(
            [size, size, pool.numel()])
        if not causal:
            return u, pos_emb, neg_emb, None
        generated = self.generated[batch.pos] if self.use_flow else None
        anchor = sampler.anchor(batch.pos, pos_emb.detach(), generated)
        slot, empty = sampler.rank_pool(
            batch.user, anchor, torch.arange(pool.numel(), device=h.device),
            pool, pool_emb.detach())
        hard_emb = pool_emb.index_select(0, slot)
        if bool(empty.any()):
            rows = empty.nonzero().view(-1)
            fallback = sampler.pairs.uniform_negatives(batch.user[rows])
            _, emb = self.propagate_rows(item_input, self.train_adj,
                                         batch.user[:0], fallback)
            hard_emb = hard_emb.index_put((rows, ), emb + h[fallback])
        return u, pos_emb, neg_emb, hard_emb

    def causal_negatives(self, batch: BPRBatch, item_emb: Tensor,
                         pos: Tensor, neg: Tensor) -> Tensor:
        r"""The causal hard negatives of the batch's rows on a subgraph, as
        positions among the subgraph's items (the rows of :obj:`item_emb`):
        the pool is :math:`N_c` of the subgraph's items (all of them when
        fewer; see the class description), and a row whose pool holds only
        its user's training items gets the batch's own negative
        :obj:`neg`."""
        generated = self.generated[batch.pos] if self.use_flow else None
        return self.causal_sampler.sample_subgraph(
            batch.user, batch.pos, pos, batch.subgraph.item_id, item_emb,
            generated, fallback=neg)
