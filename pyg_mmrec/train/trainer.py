"""The training loop: the model's stages and its batches, early stopping
on validation, test at the best validation epoch, atomic checkpoints and
resume."""
import contextlib
import copy
import itertools
import logging
import math
import os
import time
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence,
                    Union)

import numpy as np
import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from ..graphs import PairIndex, interaction_graph, train_graph
from ..loader import BatchSource, NeighborSource
from ..models.base import OPTIMIZERS, Stage, build_optimizer
from . import distributed
from .checkpoint import (RunLock, atomic_save, load_checkpoint,
                         remove_stale_temporaries, rng_state, seed_everything,
                         set_rng_state)
from .divergence import TrainingDiverged, checked_scores, loss_values
from .protocols import build_evaluator
from .records import differing_keys, format_record, peak_memory_mb, write_json
from .offload import DiskOffload

log = logging.getLogger('pyg_mmrec')

#: What every :obj:`last.pt` holds.
CHECKPOINT_KEYS = ('epoch', 'model', 'optimizer', 'stage_optimizers', 'rng',
                   'history', 'best', 'bad_evals', 'config')

SELECT_ON_TEST_LABEL = ('select-on-test (paper-reproduction mode: the best '
                        'epoch is chosen on the test set, which is optimistic)')


class Trainer:
    r"""Fits a :class:`~pyg_mmrec.models.Recommender`: in every epoch its
    :meth:`~pyg_mmrec.models.Recommender.stages`, then its own batches
    through :obj:`model(batch)` (the summed loss terms, one optimiser step
    per batch); evaluates it on validation every :obj:`eval_every` epochs,
    stops after :obj:`patience` evaluations without improving the selection
    metric and reports the test metrics at the best validation epoch.

    Every batch source draws an epoch from its own generator, seeded by
    :obj:`(seed, epoch, stage)`, so that an epoch is reproducible and a
    resumed run trains exactly as an uninterrupted one. Gradients are
    freed right after every step, in every stage. Under
    :mod:`torch.distributed` every process draws the same shuffled order
    and takes its shard of the batches
    (:func:`~pyg_mmrec.loader.shard_slices`; wrap the model with
    :func:`~pyg_mmrec.train.distributed.wrap_model` to all-reduce
    gradients), the evaluation is sharded over users, and only the main
    process writes checkpoints and results.

    The recommender's batches are full-graph triples by default
    (:obj:`sampler="full"`, the model's
    :meth:`~pyg_mmrec.models.Recommender.batch_source`), or sampled
    subgraphs (:obj:`sampler="neighbor"`,
    :class:`~pyg_mmrec.loader.NeighborSource`: LinkNeighborLoader over the
    training graph) for models whose encoder is local
    (:attr:`~pyg_mmrec.models.Recommender.supports_subgraph`).

    Args:
        model (Recommender): The model (or a
            :class:`~torch.nn.parallel.DistributedDataParallel` around it).
        data (HeteroData): The dataset it was built from.
        optimizer (str): :obj:`"adam"` or :obj:`"adamw"` (decoupled weight
            decay) for the recommender's parameters. (default: :obj:`"adam"`)
        lr (float): Learning rate. (default: :obj:`1e-3`)
        weight_decay (float): Weight decay. (default: :obj:`0.0`)
        clip_grad_norm (float, optional): Clip the recommender's gradients
            to this total 2-norm before every step (MMRec's
            :obj:`clip_grad_norm`); :obj:`None`: no clipping.
            (default: :obj:`None`)
        batch_size (int): Training triples per batch of the default source.
            (default: :obj:`2048`)
        epochs (int): Maximum number of epochs. (default: :obj:`1000`)
        patience (int): Evaluations without improvement before stopping.
            (default: :obj:`20`)
        eval_every (int): Epochs between evaluations. (default: :obj:`1`)
        select_on (str): :obj:`"val"` (the honest protocol) or :obj:`"test"`
            (only to reproduce papers that select on test; labelled as such
            in every output). (default: :obj:`"val"`)
        metric (str, optional): The selection metric. (default:
            :obj:`"recall@20"` for full ranking, :obj:`"hit@10"` for the
            sampled protocol)
        ks (Sequence[int]): Cut-offs of the reported metrics.
        eval_batch_size (int): Users (or cases) per evaluation batch.
        test_masks (Sequence[str] or str): The test masking rules of full
            ranking (see :class:`~pyg_mmrec.train.Evaluator`): the first
            gives the reported :obj:`"test"` metrics; with several, every
            test evaluation also records each rule's metrics under
            :obj:`"test_by_mask"`. :obj:`"train"` is MMRec's and DiffMM's
            rule (validation items may be recommended at test).
            (default: :obj:`("train_val",)`)
        protocol (str): :obj:`"full"` (full ranking, all items) or
            :obj:`"sampled"` (each held-out item against
            :obj:`num_negatives` seeded negatives; see
            :class:`~pyg_mmrec.train.SampledEvaluator`).
            (default: :obj:`"full"`)
        num_negatives (int): Negatives per case of the sampled protocol.
            (default: :obj:`99`)
        seed (int): Seed of every random number generator. (default: :obj:`0`)
        device (str): Device to train on. (default: :obj:`"cpu"`)
        checkpoint_dir (str, optional): Where :obj:`last.pt` (full state,
            written atomically after every epoch), :obj:`best.pt` (best model
            weights) and :obj:`results.json` go.
        resume (bool): Continue from :obj:`checkpoint_dir/last.pt`; without
            one, a warning says so and the run starts at epoch 1.
            (default: :obj:`False`)
        config (dict, optional): The run's configuration, stored in the
            results and checked against the checkpoint on resume.
        progress (bool): Show tqdm progress bars. (default: :obj:`True`)
        callbacks (list, optional): Functions :obj:`f(trainer, record)`
            called after every epoch.
        source (BatchSource, optional): The recommender's batches, instead
            of those :obj:`sampler` chooses.
        sampler (str): :obj:`"full"`: the model's
            :meth:`~pyg_mmrec.models.Recommender.batch_source` over the
            training graph with :obj:`batch_size`, sharded over processes
            (:class:`~pyg_mmrec.loader.TripletSource` for most models);
            :obj:`"neighbor"`: :class:`~pyg_mmrec.loader.NeighborSource`
            mini-batches. (default: :obj:`"full"`)
        num_neighbors (str or list): Neighbours per hop of
            :obj:`"neighbor"`, *e.g.* :obj:`"10,10"`. (default:
            :obj:`"10,10"`)
        negatives (str): Negatives of :obj:`"neighbor"` batches:
            :obj:`"uniform"` or :obj:`"popularity"` true negatives, or
            :obj:`"loader"` (LinkNeighborLoader's own, which may be
            positives). (default: :obj:`"uniform"`)
        loader_workers (int): Worker processes of :obj:`"neighbor"`.
            (default: :obj:`0`)
    """
    def __init__(
        self,
        model,
        data: HeteroData,
        optimizer: str = 'adam',
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        clip_grad_norm: Optional[float] = None,
        batch_size: int = 2048,
        epochs: int = 1000,
        patience: int = 20,
        eval_every: int = 1,
        select_on: str = 'val',
        metric: Optional[str] = None,
        ks: Sequence[int] = (5, 10, 20, 50),
        eval_batch_size: int = 4096,
        test_masks: Sequence[str] = ('train_val', ),
        protocol: str = 'full',
        num_negatives: int = 99,
        seed: int = 0,
        device: str = 'cpu',
        checkpoint_dir: Optional[str] = None,
        resume: bool = False,
        config: Optional[Dict[str, Any]] = None,
        progress: bool = True,
        callbacks: Optional[List[Callable]] = None,
        source: Optional[BatchSource] = None,
        sampler: str = 'full',
        num_neighbors: Union[str, Sequence[int]] = '10,10',
        negatives: str = 'uniform',
        loader_workers: int = 0,
    ):
        if select_on not in ('val', 'test'):
            raise ValueError(f"select_on must be 'val' or 'test', got {select_on!r}")
        for name, value in (('batch_size', batch_size), ('eval_every', eval_every)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if epochs < 0 or patience < 0:
            raise ValueError("epochs and patience must be >= 0")
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ValueError(f"clip_grad_norm must be > 0 (or None), got "
                             f"{clip_grad_norm}")
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs a checkpoint_dir")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, "
                             f"got {optimizer!r}")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        #: The recommender itself (inside a DistributedDataParallel wrapper).
        self.net = getattr(self.model, 'module', self.model)
        self.batch_size, self.epochs, self.patience = batch_size, epochs, patience
        self.eval_every, self.select_on = eval_every, select_on
        self.clip_grad_norm = clip_grad_norm
        #: The epoch being trained or evaluated (named when it diverges).
        self.epoch = 0
        self.seed, self.checkpoint_dir, self.resume = seed, checkpoint_dir, resume
        self.progress = progress and distributed.is_main_process()
        self.callbacks = list(callbacks or [])
        self.config = dict(config or {})
        self.evaluator = build_evaluator(
            protocol, data, ks=ks, batch_size=eval_batch_size,
            test_masks=test_masks, num_negatives=num_negatives, seed=seed)
        self.metric = metric or ('recall@20' if protocol == 'full'
                                 else 'hit@10')
        if self.metric not in self.evaluator.metric_names:
            raise ValueError(f"metric {self.metric!r} is not computed; choose "
                             f"one of {self.evaluator.metric_names}")
        self.source = source if source is not None else default_source(
            self.net, data, sampler, batch_size, num_neighbors=num_neighbors,
            negatives=negatives, num_workers=loader_workers)

        self.stages: List[Stage] = list(self.net.stages())
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
        self.stage_optimizers = {
            st.name: build_optimizer(st.optimizer, st.parameters(),
                                     **st.optimizer_kwargs)
            for st in self.stages}
        self.offloads = {
            st.name: DiskOffload(st.modules, [self.stage_optimizers[st.name]],
                                 st.offload_dir)
            for st in self.stages if st.offload_dir is not None}

    # ------------------------------------------------------------------
    def _path(self, name: str) -> Optional[str]:
        if self.checkpoint_dir is None or not distributed.is_main_process():
            return None
        return os.path.join(self.checkpoint_dir, name)

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
        # The trailing 0 was the rank: single-process runs draw as before.
        state = np.random.SeedSequence(
            [self.seed, epoch, stream, 0]).generate_state(2)
        seed = (int(state[0]) << 32 | int(state[1])) & ((1 << 63) - 1)
        return torch.Generator().manual_seed(seed)

    def evaluate(self, split: str,
                 test_mask: Optional[str] = None) -> Dict[str, float]:
        r"""Metrics of the current model on :obj:`split` (with the test
        masking rule :obj:`test_mask`, by default the first of
        :obj:`test_masks`)."""
        self.net.eval()
        try:
            return self.evaluator.evaluate(
                checked_scores(self.net.score, self.epoch, split), split,
                test_mask)
        finally:
            self.net.train()

    def _evaluate_test(self, record: Dict[str, Any]) -> None:
        masks = self.evaluator.test_masks
        record['test'] = self.evaluate('test')
        if len(masks) > 1:
            record['test_by_mask'] = {masks[0]: record['test'], **{
                mask: self.evaluate('test', mask) for mask in masks[1:]}}

    def _run(self, stage: Optional[str],
             step: Callable[[Any], Dict[str, torch.Tensor]],
             batches, num_batches: int, optimizer,
             per_term: bool = False) -> Dict[str, float]:
        r"""One pass of :obj:`step` over :obj:`batches`, one optimiser step
        per batch (after one backward pass of the terms' sum, or of each
        term in turn); the mean of each loss term."""
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
            if self.clip_grad_norm is not None and stage is None:
                torch.nn.utils.clip_grad_norm_(
                    [p for group in optimizer.param_groups
                     for p in group['params']], self.clip_grad_norm)
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
        if stage.before is not None:
            stage.before()
        means = self._run(stage.name, stage.loss,
                          stage.source.batches(epoch,
                                               self.generator(epoch, index)),
                          len(stage.source),
                          self.stage_optimizers[stage.name],
                          per_term=stage.backward_per_term)
        if stage.after is not None:
            stage.after()
        if offload is not None:  # idle until the next epoch
            offload.offload()
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

    # ------------------------------------------------------------------
    def _save_state(self, path, epoch, history, best, bad_evals) -> None:
        with self.resident():  # written before the stages go back to disk
            atomic_save({
                'epoch': epoch, 'model': self.net.state_dict(),
                'optimizer': self.optimizer.state_dict(),
                'stage_optimizers': {
                    name: opt.state_dict()
                    for name, opt in self.stage_optimizers.items()},
                'rng': rng_state(), 'history': history, 'best': best,
                'bad_evals': bad_evals, 'config': self.config}, path)

    def _load_checkpoint(self, path: str) -> Dict[str, Any]:
        state = load_checkpoint(path, self.device, keys=CHECKPOINT_KEYS)
        if state.get('config') != self.config:
            diff = differing_keys([state.get('config') or {}, self.config])
            raise ValueError(
                f"{path}: the checkpoint was written with another configuration "
                f"(differs in {', '.join(diff)}); use another checkpoint "
                f"directory or drop --resume")
        try:
            with self.resident():
                self.net.load_state_dict(state['model'])
                self.optimizer.load_state_dict(state['optimizer'])
                for name, opt in self.stage_optimizers.items():
                    opt.load_state_dict(state['stage_optimizers'][name])
            set_rng_state(state['rng'])
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{path}: the checkpoint does not fit this "
                             f"model and trainer ({str(e)[:300]})") from None
        return state

    def fit(self) -> Dict[str, Any]:
        r"""Trains until early stopping (or :obj:`epochs`) and returns the
        results: configuration, per-epoch history, best epoch, its validation
        and test metrics, timings and peak memory.

        Runs with :func:`torch.use_deterministic_algorithms` (restored
        afterwards): some CPU kernels (e.g. accumulating index writes) are
        otherwise not reproducible from run to run with several threads.
        Offloaded stages are back in memory when it returns. The main
        process holds :obj:`checkpoint_dir`'s :class:`RunLock` (a second run
        on the folder is refused) and first removes the temporary files of
        an interrupted write.

        Raises:
            TrainingDiverged: If a loss term or the scores are not finite;
                :obj:`results.json` then records it under
                :obj:`"diverged"`, with the best epoch before it."""
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
        lock = None
        try:
            if self._path('.lock') is not None:
                lock = RunLock(self.checkpoint_dir).acquire()
                remove_stale_temporaries(self.checkpoint_dir)
            return self._fit()
        finally:
            torch.use_deterministic_algorithms(previous)
            for offload in self.offloads.values():
                offload.restore()
            if lock is not None:
                lock.release()

    def _fit(self) -> Dict[str, Any]:
        seed_everything(self.seed)
        history: List[Dict[str, Any]] = []
        best: Dict[str, Any] = {'epoch': 0, 'score': float('-inf'),
                                'val': {}, 'test': {}}
        bad_evals, start = 0, 1
        last = (None if self.checkpoint_dir is None else
                os.path.join(self.checkpoint_dir, 'last.pt'))
        if self.optimizer is None:  # nothing to fit (e.g. popularity)
            self.epochs = 0
        elif self.resume and os.path.exists(last):
            state = self._load_checkpoint(last)
            history, best = state['history'], state['best']
            bad_evals, start = state['bad_evals'], state['epoch'] + 1
            log.info("resumed from %s after epoch %d", last, state['epoch'])
        elif self.resume:
            log.warning("--resume: no checkpoint %s; starting a new run at "
                        "epoch 1", last)

        try:
            stopped_early = self._epochs(start, history, best, bad_evals)
        except TrainingDiverged as e:
            self._results(history, best, False, diverged=str(e))
            raise
        if not best['val']:  # untrained model, or no evaluation happened
            record = {'epoch': 0}
            self._evaluate_epoch(0, record, best, bad_evals)
            history.append(record)
        return self._results(history, best, stopped_early)

    def _epochs(self, start: int, history: List[Dict[str, Any]],
                best: Dict[str, Any], bad_evals: int) -> bool:
        r"""Trains epochs :obj:`start..epochs` (appending to
        :obj:`history`, updating :obj:`best`); whether it stopped early."""
        for epoch in range(start, self.epochs + 1):
            if bad_evals >= self.patience and epoch > 1:
                return True
            self.epoch = epoch
            t0 = time.perf_counter()
            losses = self.train_epoch(epoch)
            record: Dict[str, Any] = {'epoch': epoch, 'losses': losses,
                                      'train_time': time.perf_counter() - t0}
            if epoch % self.eval_every == 0 or epoch == self.epochs:
                bad_evals = self._evaluate_epoch(epoch, record, best, bad_evals)
            history.append(record)
            log.info(format_record(record, self.metric))
            if self._path('last.pt') is not None:
                self._save_state(self._path('last.pt'), epoch, history, best,
                                 bad_evals)
            for callback in self.callbacks:
                callback(self, record)
        return False

    def _evaluate_epoch(self, epoch, record, best, bad_evals) -> int:
        t0 = time.perf_counter()
        record['val'] = self.evaluate('val')
        record['eval_time'] = time.perf_counter() - t0
        if self.select_on == 'test':
            self._evaluate_test(record)
        score = record[self.select_on][self.metric]
        if math.isfinite(score) and score > best['score']:
            if 'test' not in record:
                self._evaluate_test(record)
            best.update(epoch=epoch, score=score, val=record['val'],
                        test=record['test'])
            if 'test_by_mask' in record:
                best['test_by_mask'] = record['test_by_mask']
            record['best'] = True
            if self._path('best.pt') is not None:
                with self.resident():
                    atomic_save(copy.deepcopy(self.net.state_dict()),
                                self._path('best.pt'))
            return 0
        return bad_evals + 1

    def protocol_label(self) -> str:
        r"""The evaluation protocol as results and tables name it; a model
        whose candidate scores depend on the other candidates (see
        :attr:`~pyg_mmrec.models.Recommender.candidate_dependent`) is
        labelled transductive under the sampled protocol."""
        label = self.evaluator.protocol
        if (label != 'full ranking'
                and getattr(self.net, 'candidate_dependent', False)):
            label += ' (transductive: candidates attend to each other)'
        return label

    def _results(self, history, best, stopped_early,
                 diverged: Optional[str] = None) -> Dict[str, Any]:
        train_times = [r['train_time'] for r in history if 'train_time' in r]
        eval_times = [r['eval_time'] for r in history if 'eval_time' in r]
        results = {
            'config': self.config,
            'selection': 'val' if self.select_on == 'val' else SELECT_ON_TEST_LABEL,
            'metric': self.metric,
            'protocol': self.protocol_label(),
            'test_mask': self.evaluator.test_masks[0],
            'best_epoch': best['epoch'],
            'val': best['val'],
            'test': best['test'],
            'epochs_run': len(train_times),
            'stopped_early': stopped_early,
            'time_per_epoch': _mean(train_times),
            'eval_time': _mean(eval_times),
            'peak_memory_mb': peak_memory_mb(),
            'history': history,
        }
        if 'test_by_mask' in best:
            results['test_by_mask'] = best['test_by_mask']
        if diverged is not None:
            results['diverged'] = diverged
        path = self._path('results.json')
        if path is not None:
            write_json(results, path)
        return results


#: The batch samplers of :class:`Trainer` (see its :obj:`sampler`).
SAMPLERS = ('full', 'neighbor')


def default_source(model, data: HeteroData, sampler: str, batch_size: int,
                   **neighbor_kwargs) -> BatchSource:
    r"""The recommender's batches of :class:`Trainer` for :obj:`sampler`
    over the training graph, sharded over the processes; a model whose
    encoder needs the whole graph refuses :obj:`"neighbor"`."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got "
                         f"{sampler!r}")
    graph = train_graph(data, 'cpu')
    shard = (distributed.rank(), distributed.world_size())
    exclude = negative_exclusion(model, data)
    if sampler == 'full':
        return model.batch_source(graph, batch_size, shard=shard,
                                  exclude=exclude)
    if not getattr(model, 'supports_subgraph', False):
        raise ValueError(
            f"sampler='neighbor': {type(model).__name__} encodes the whole "
            f"training graph (or draws batches of its own) and cannot train "
            f"on sampled subgraphs; use the default full-graph batches "
            f"(mini-batch models: those with supports_subgraph, e.g. "
            f"lightgcn)")
    return NeighborSource(graph, batch_size, shard=shard, exclude=exclude,
                          **neighbor_kwargs)


def negative_exclusion(model, data: HeteroData) -> Optional[PairIndex]:
    r"""The pairs the default source's negatives avoid besides the training
    ones: every interaction when the model asks for it
    (:attr:`~pyg_mmrec.models.Recommender.negative_exclusion`), else
    :obj:`None`."""
    rule = getattr(model, 'negative_exclusion', 'train')
    if rule == 'train':
        return None
    if rule != 'all':
        raise ValueError(f"negative_exclusion must be 'train' or 'all', "
                         f"got {rule!r}")
    log.warning("%s: negatives exclude validation and test items too (the "
                "original's leak, faithful mode)", type(model).__name__)
    return interaction_graph(data, 'cpu')


def _mean(values):
    return sum(values) / len(values) if values else 0.0
