r"""One epoch of a model: its stages, then its batches, one optimiser
step per batch (see :class:`EpochRunner`)."""
import contextlib
import dataclasses
import itertools
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..loader import BatchSource
from ..models.base import Stage
from . import distributed
from .divergence import loss_values
from .offload import DiskOffload
from .optim import (
    build_optimizer,
    check_lr_decay,
    clip_gradients,
    decay_learning_rate,
)


def shard_stage(stage: Stage) -> Stage:
    r""":obj:`stage` with its source sharded over the processes of
    :mod:`torch.distributed` (itself with one process): each process takes
    its part of every round of blocks (the source's :meth:`with_shard`).

    Raises:
        ValueError: If several processes train and the stage's source
            cannot be sharded.
    """
    world = distributed.world_size()
    if world == 1:
        return stage
    if not hasattr(stage.source, 'with_shard'):
        raise ValueError(
            f"stage {stage.name!r}: its source {type(stage.source).__name__} "
            f"has no with_shard(rank, world_size), so its batches cannot be "
            f"split over {world} processes; run it in one process")
    return dataclasses.replace(stage, source=stage.source.with_shard(
        distributed.rank(), world))


class EpochRunner:
    r"""Trains a :class:`~pyg_mmrec.models.Recommender` epoch by epoch: in
    every epoch its :meth:`~pyg_mmrec.models.Recommender.stages` (each with
    its own optimiser, restored from its offload file for the duration),
    then the batches of :obj:`source` through :obj:`model(batch)` (the
    summed loss terms, one optimiser step per batch). The base of
    :class:`~pyg_mmrec.train.Trainer`, which adds evaluation, model
    selection and checkpoints; the arguments are the trainer's.

    Every batch source draws an epoch from its own generator, seeded by
    :obj:`(seed, epoch, stage)`, so that an epoch is reproducible and a
    resumed run trains exactly as an uninterrupted one. Gradients are
    freed right after every step, in every stage. A loss term that is not a
    finite tensor stops the epoch before the step (see
    :func:`~pyg_mmrec.train.divergence.loss_values`).
    """
    def __init__(
        self,
        model: torch.nn.Module,
        source: BatchSource,
        seed: int = 0,
        progress: bool = True,
        optimizer: str = 'adam',
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        clip_grad_norm: Optional[float] = None,
        lr_decay: Optional[Sequence[float]] = None,
    ):
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be > 0 (or None), got "
                             f"{clip_grad_norm}")
        check_lr_decay(lr_decay)
        self.model = model
        #: The recommender itself (inside a DistributedDataParallel wrapper).
        self.net: torch.nn.Module = getattr(model, 'module', model)
        self.device = next(itertools.chain(
            self.net.parameters(), self.net.buffers()),
            torch.empty(0)).device
        self.source = source
        self.seed = seed
        self.progress = progress and distributed.is_main_process()
        self.lr, self.lr_decay = lr, lr_decay
        self.clip_grad_norm = clip_grad_norm
        #: The epoch being trained or evaluated (named when it diverges).
        self.epoch = 0

        self.stages: List[Stage] = [shard_stage(st)
                                    for st in self.net.stages()]
        names = [st.name for st in self.stages]
        if len(set(names)) != len(names) or 'model' in names:
            raise ValueError(f"stage names must be distinct and not 'model', "
                             f"got {names}")
        claimed = {id(p) for st in self.stages for p in st.parameters()}
        params = [p for p in self.net.parameters()
                  if p.requires_grad and id(p) not in claimed]
        self.optimizer = (build_optimizer(optimizer, params, lr=lr,
                                          weight_decay=weight_decay)
                          if params and self.net.trainable else None)
        self.stage_optimizers = {}
        for st in self.stages:
            try:
                self.stage_optimizers[st.name] = build_optimizer(
                    st.optimizer, st.parameters(), **st.optimizer_kwargs)
            except ValueError as e:
                raise ValueError(f"stage {st.name!r}: {e}") from None
        self.offloads = {
            st.name: DiskOffload(st.modules, [self.stage_optimizers[st.name]],
                                 st.offload_dir)
            for st in self.stages if st.offload_dir is not None}

    @contextlib.contextmanager
    def resident(self) -> Iterator[None]:
        r"""Keeps every offloaded stage in memory for the block (its state
        is read or written), and offloads it again afterwards."""
        was = [off for off in self.offloads.values() if off.is_offloaded]
        for off in was:
            off.restore()
        try:
            yield
        finally:
            for off in was:
                off.offload()

    def generator(self, epoch: int, stream: int) -> torch.Generator:
        r"""The generator of one epoch of one batch stream (0: the
        recommender, :math:`k`: the :math:`k`-th stage), the same in every
        process (the sources shard what it draws)."""
        return torch.Generator().manual_seed(
            self._stream_seed(epoch, stream, 0))

    def _stream_seed(self, epoch: int, stream: int, key: int) -> int:
        # key 0: the generators shared by every process (the key was the
        # rank once: single-process runs draw as before); 1 + rank: a
        # process's own stage stream.
        state = np.random.SeedSequence(
            [self.seed, epoch, stream, key]).generate_state(2)
        return (int(state[0]) << 32 | int(state[1])) & ((1 << 63) - 1)

    @contextlib.contextmanager
    def stage_random_stream(self, epoch: int, stream: int) -> Iterator[None]:
        r"""Under :mod:`torch.distributed`, a stage's epoch draws its
        global random numbers (*e.g.* a denoiser's noise) from a stream of
        its process's own, seeded by :obj:`(seed, epoch, stage, rank)`, so
        that the processes' blocks get independent noise and a resumed run
        draws the same; the global stream is restored afterwards. With one
        process the stage draws from the global stream, as before."""
        if distributed.world_size() == 1:
            yield
            return
        devices = [self.device] if self.device.type == 'cuda' else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self._stream_seed(epoch, stream,
                                                1 + distributed.rank()))
            yield

    def _run(self, stage: Optional[str],
             step: Callable[[Any], Dict[str, torch.Tensor]],
             batches, num_batches: int, optimizer,
             per_term: bool = False,
             sync: Optional[Callable[[], None]] = None) -> Dict[str, float]:
        r"""One pass of :obj:`step` over :obj:`batches`, one optimiser step
        per batch (after one backward pass of the terms' sum, or of each
        term in turn, then :obj:`sync`, e.g. the all-reduce of a stage's
        gradients); the mean of each loss term."""
        sums: Dict[str, float] = {}
        name = f'epoch {self.epoch}' + (f' {stage}' if stage else '')
        bar = tqdm(batches, total=num_batches, desc=name, leave=False,
                   disable=not self.progress or None)
        optimizer.zero_grad(set_to_none=True)
        count = 0
        for batch in bar:
            terms = step(batch.to(self.device))
            # Before the step: a term that is not finite stops the run
            # before it reaches the weights.
            values = loss_values(terms, self.epoch, count + 1, stage)
            if per_term:
                for term in terms.values():
                    term.backward()
            else:
                sum(terms.values()).backward()
            if sync is not None:
                sync()
            if stage is None:
                clip_gradients(optimizer, self.clip_grad_norm)
            optimizer.step()
            # Free the gradients right away, so that the next forward pass
            # (and the evaluation, and the other stages) can reuse their
            # memory.
            optimizer.zero_grad(set_to_none=True)
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
        return {key: value / max(count, 1) for key, value in sums.items()}

    def run_stage(self, index: int, stage: Stage,
                  epoch: int) -> Dict[str, float]:
        r"""One epoch of a model stage (restored from its offload file for
        the duration, if it has one)."""
        offload = self.offloads.get(stage.name)
        if offload is not None:
            offload.restore()
        with self.stage_random_stream(epoch, index):
            means = self._run_stage(index, stage, epoch)
        # What the stage drew (e.g. a generated graph's dropout seed) is
        # rank 0's in every process.
        distributed.broadcast_buffers(self.net)
        if offload is not None:  # idle until the next epoch
            offload.offload()
        return means

    def _run_stage(self, index: int, stage: Stage,
                   epoch: int) -> Dict[str, float]:
        if stage.before is not None:
            stage.before()
        params = stage.parameters()
        means = self._run(stage.name, stage.loss,
                          stage.source.batches(epoch,
                                               self.generator(epoch, index)),
                          len(stage.source),
                          self.stage_optimizers[stage.name],
                          per_term=stage.backward_per_term,
                          sync=lambda: distributed.average_gradients(params))
        if stage.after is not None:
            stage.after()
        return means

    def train_epoch(self, epoch: int,
                    max_batches: Optional[int] = None) -> Dict[str, float]:
        r"""One epoch: the model's stages, then one pass over the
        recommender's batches (or their first :obj:`max_batches`, for
        benchmarks); returns the mean of each loss term over the batches,
        their sum :obj:`"loss"`, and each stage's terms as
        :obj:`"<stage>/<term>"`."""
        self.epoch = epoch
        net = self.net
        net.train()
        stage_means = {}
        for index, stage in enumerate(self.stages, start=1):
            for key, value in self.run_stage(index, stage, epoch).items():
                stage_means[f'{stage.name}/{key}'] = value
        net.on_epoch_start(epoch)
        if self.optimizer is not None:
            decay_learning_rate(self.optimizer, self.lr, epoch, self.lr_decay)
        batches = self.source.batches(epoch, self.generator(epoch, 0))
        num_batches = len(self.source)
        if max_batches is not None:
            num_batches = min(num_batches, max_batches)
            batches = itertools.islice(batches, num_batches)
        means = self._run(None, self.model, batches, num_batches,
                          self.optimizer)
        net.on_epoch_end(epoch)
        means['loss'] = sum(means.values())
        means.update(stage_means)
        return means
