"""The training loop: the model's stages and its batches, early stopping
on validation, test at the best validation epoch, atomic checkpoints and
resume."""
import copy
import logging
import math
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch_geometric.data import HeteroData

from ..loader import BatchSource
from . import distributed
from .checkpoint import (
    RunLock,
    atomic_save,
    load_checkpoint,
    remove_stale_temporaries,
    rng_state,
    seed_everything,
    set_rng_state,
)
from .divergence import TrainingDiverged, checked_scores
from .epoch import EpochRunner
from .evaluator import EvaluationProtocol
from .protocols import build_evaluator
from .records import (
    config_hash,
    differing_keys,
    format_record,
    peak_memory_mb,
    write_json,
)
from .sources import build_source

log = logging.getLogger('pyg_mmrec')

#: What every :obj:`last.pt` holds.
CHECKPOINT_KEYS = ('epoch', 'model', 'optimizer', 'stage_optimizers', 'rng',
                   'history', 'best', 'bad_evals', 'config')

SELECT_ON_TEST_LABEL = ('select-on-test (paper-reproduction mode: the best '
                        'epoch is chosen on the test set, which is '
                        'optimistic)')


class Trainer(EpochRunner):
    r"""Fits a :class:`~pyg_mmrec.models.Recommender`: in every epoch its
    :meth:`~pyg_mmrec.models.Recommender.stages`, then the batches of
    :obj:`source` through :obj:`model(batch)` (the summed loss terms, one
    optimiser step per batch); evaluates it with :obj:`evaluator` every
    :obj:`eval_every` epochs, stops after :obj:`patience` evaluations
    without improving the evaluator's selection metric and reports the test
    metrics at the best epoch.

    The batch source and the evaluator are objects, each built from its
    own section of a configuration (:func:`~pyg_mmrec.train.build_source`
    from :obj:`loader:`, :func:`~pyg_mmrec.train.build_evaluator` from
    :obj:`evaluation:`, which also holds the model selection); the keyword-
    only arguments below are the :obj:`trainer:` section.

    Every batch source draws an epoch from its own generator, seeded by
    :obj:`(seed, epoch, stage)`, so that an epoch is reproducible and a
    resumed run trains exactly as an uninterrupted one. Gradients are
    freed right after every step, in every stage. Under
    :mod:`torch.distributed` every process draws the same shuffled order
    and takes its shard of the batches
    (:func:`~pyg_mmrec.loader.shard_slices`; wrap the model with
    :func:`~pyg_mmrec.train.distributed.wrap_model` to all-reduce
    gradients); a stage's blocks are sharded the same way, its gradients
    averaged by the trainer, its random draws taken from a stream of each
    process's own and what it leaves in the model's state broadcast from
    rank 0 (:obj:`EpochRunner`); the evaluation is
    sharded over users, and only the main process writes checkpoints and
    results. The model trains on the device it is on.

    Example:
        >>> model = get_model('lightgcn')(data)
        >>> trainer = Trainer(model, data, source=build_source(
        ...     model, data, batch_size=1024), progress=False, epochs=3,
        ...     lr=1e-3)
        >>> results = trainer.fit()
        >>> results['epochs_run'], 0 < results['test']['recall@20'] < 1
        (3, True)

    Args:
        model (Recommender): The model (or a
            :class:`~torch.nn.parallel.DistributedDataParallel` around it).
        data (HeteroData, optional): The dataset it was built from, for the
            default :obj:`source` and :obj:`evaluator`.
        source (BatchSource, optional): The recommender's batches.
            (default: :obj:`build_source(model, data)`, full-graph triples)
        evaluator (EvaluationProtocol, optional): The evaluation protocol
            and model selection. (default: :obj:`build_evaluator(data,
            seed)`, full ranking selected on validation Recall@20)
        seed (int): Seed of every random number generator. (default: :obj:`0`)
        checkpoint_dir (str, optional): Where :obj:`last.pt` (full state,
            written atomically after every epoch), :obj:`best.pt` (best model
            weights) and :obj:`results.json` go.
        progress (bool): Show tqdm progress bars. (default: :obj:`True`)
        optimizer (str): :obj:`"adam"` or :obj:`"adamw"` (decoupled weight
            decay) for the recommender's parameters. (default: :obj:`"adam"`)
        lr (float): Learning rate. (default: :obj:`1e-3`)
        weight_decay (float): Weight decay. (default: :obj:`0.0`)
        clip_grad_norm (float, optional): Clip the recommender's gradients
            to this total 2-norm before every step (MMRec's
            :obj:`clip_grad_norm`); :obj:`None`: no clipping.
            (default: :obj:`None`)
        lr_decay (Sequence[float], optional): :obj:`[gamma, every]`: the
            learning rate of epoch :math:`e` is :math:`\mathrm{lr} \cdot
            \gamma^{(e - 1) / every}` (MMRec's
            :obj:`learning_rate_scheduler`; see
            :func:`~pyg_mmrec.train.optim.decay_learning_rate`).
            (default: :obj:`None`, a constant rate)
        epochs (int): Maximum number of epochs. (default: :obj:`1000`)
        patience (int): Evaluations without improvement before stopping.
            (default: :obj:`20`)
        eval_every (int): Epochs between evaluations. (default: :obj:`1`)
    """
    def __init__(
        self,
        model: torch.nn.Module,
        data: Optional[HeteroData] = None,
        source: Optional[BatchSource] = None,
        evaluator: Optional[EvaluationProtocol] = None,
        seed: int = 0,
        checkpoint_dir: Optional[str] = None,
        progress: bool = True,
        *,
        optimizer: str = 'adam',
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        clip_grad_norm: Optional[float] = None,
        lr_decay: Optional[Sequence[float]] = None,
        epochs: int = 1000,
        patience: int = 20,
        eval_every: int = 1,
    ):
        if eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {eval_every}")
        if epochs < 0 or patience < 0:
            raise ValueError("epochs and patience must be >= 0")
        if data is None and (source is None or evaluator is None):
            raise ValueError("Trainer needs the data, or both a source and "
                             "an evaluator")
        super().__init__(
            model, source if source is not None else build_source(model, data),
            seed=seed, progress=progress, optimizer=optimizer, lr=lr,
            weight_decay=weight_decay, clip_grad_norm=clip_grad_norm,
            lr_decay=lr_decay)
        self.epochs, self.patience, self.eval_every = epochs, patience, \
            eval_every
        self.checkpoint_dir = checkpoint_dir
        self.evaluator = (evaluator if evaluator is not None else
                          build_evaluator(data, seed))
        self.evaluator.check_metric()
        #: The run's configuration and callbacks (see :meth:`fit`).
        self.config: Dict[str, Any] = {}
        #: Whether :meth:`fit` evaluates the test split (its :obj:`test`).
        self.test = True
        self.callbacks: List[Callable] = []

    @property
    def metric(self) -> str:
        r"""The selection metric (the evaluator's)."""
        return self.evaluator.metric

    @property
    def select_on(self) -> str:
        r"""The split the best epoch is selected on (the evaluator's)."""
        return self.evaluator.select_on

    # ------------------------------------------------------------------
    def _path(self, name: str) -> Optional[str]:
        if self.checkpoint_dir is None or not distributed.is_main_process():
            return None
        return os.path.join(self.checkpoint_dir, name)

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
                f"{path}: the checkpoint was written with another "
                f"configuration (differs in {', '.join(diff)}); use another "
                f"checkpoint directory or drop --resume")
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

    def fit(self, resume: bool = False,
            config: Optional[Dict[str, Any]] = None,
            callbacks: Optional[List[Callable]] = None,
            test: bool = True) -> Dict[str, Any]:
        r"""Trains until early stopping (or :obj:`epochs`) and returns the
        results: configuration, per-epoch history, best epoch, its validation
        and test metrics, timings and peak memory. The model keeps the last
        epoch's weights; the selected epoch's are :obj:`best.pt` in
        :obj:`checkpoint_dir` (:obj:`model.load_state_dict(torch.load(path,
        weights_only=True))`).

        Args:
            resume (bool): Continue from :obj:`checkpoint_dir/last.pt`;
                without one, a warning says so and the run starts at epoch
                1. (default: :obj:`False`)
            config (dict, optional): The run's configuration, stored in the
                results and checked against the checkpoint on resume.
            callbacks (list, optional): Functions :obj:`f(trainer, record)`
                called after every epoch; one returning :obj:`False` stops
                the run there (recorded as stopped early).
            test (bool): Evaluate the test split at each new best epoch;
                :obj:`False` (a hyper-parameter search) never computes a
                test metric, and the results hold none (:obj:`"test"` is
                :obj:`None`). (default: :obj:`True`)

        Runs with :func:`torch.use_deterministic_algorithms` (restored
        afterwards): some CPU kernels (e.g. accumulating index writes) are
        otherwise not reproducible from run to run with several threads.
        Offloaded stages are back in memory when it returns. The main
        process holds :obj:`checkpoint_dir`'s :obj:`RunLock` (a second run
        on the folder is refused) and first removes the temporary files of
        an interrupted write.

        Raises:
            TrainingDiverged: If a loss term or the scores are not finite;
                :obj:`results.json` then records it under
                :obj:`"diverged"`, with the best epoch before it."""
        if resume and self.checkpoint_dir is None:
            raise ValueError("resume=True needs a checkpoint_dir")
        if not test and self.select_on == 'test':
            raise ValueError("test=False cannot select the epoch on test")
        self.test = test
        self.config = dict(config or {})
        self.callbacks = list(callbacks or [])
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
        lock = None
        try:
            if self._path('.lock') is not None:
                lock = RunLock(self.checkpoint_dir).acquire()
                remove_stale_temporaries(self.checkpoint_dir)
            return self._fit(resume)
        finally:
            torch.use_deterministic_algorithms(previous)
            for offload in self.offloads.values():
                offload.restore()
            if lock is not None:
                lock.release()

    def _fit(self, resume: bool) -> Dict[str, Any]:
        seed_everything(self.seed)
        history: List[Dict[str, Any]] = []
        best: Dict[str, Any] = {'epoch': 0, 'score': float('-inf'),
                                'val': {}, 'test': {}}
        bad_evals, start = 0, 1
        last = (None if self.checkpoint_dir is None else
                os.path.join(self.checkpoint_dir, 'last.pt'))
        if self.optimizer is None:  # nothing to fit (e.g. popularity)
            self.epochs = 0
        elif resume and os.path.exists(last):
            state = self._load_checkpoint(last)
            history, best = state['history'], state['best']
            bad_evals, start = state['bad_evals'], state['epoch'] + 1
            log.info("resumed from %s after epoch %d", last, state['epoch'])
        elif resume:
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
                bad_evals = self._evaluate_epoch(epoch, record, best,
                                                 bad_evals)
            history.append(record)
            log.info(format_record(record, self.metric))
            if self._path('last.pt') is not None:
                self._save_state(self._path('last.pt'), epoch, history, best,
                                 bad_evals)
            # A callback returning False (e.g. a pruner) ends the run here.
            if any([callback(self, record) is False
                    for callback in self.callbacks]):
                return True
        return False

    def _evaluate_epoch(self, epoch, record, best, bad_evals) -> int:
        t0 = time.perf_counter()
        record['val'] = self.evaluate('val')
        record['eval_time'] = time.perf_counter() - t0
        if self.select_on == 'test':
            self._evaluate_test(record)
        score = record[self.select_on][self.metric]
        if math.isfinite(score) and score > best['score']:
            if 'test' not in record and self.test:
                self._evaluate_test(record)
            best.update(epoch=epoch, score=score, val=record['val'],
                        test=record.get('test'))
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
            'selection': ('val' if self.select_on == 'val' else
                          SELECT_ON_TEST_LABEL),
            'metric': self.metric,
            'protocol': self.protocol_label(),
            'test_mask': self.evaluator.test_masks[0],
            'best_epoch': best['epoch'],
            'val': best['val'],
            'test': best['test'] if self.test else None,
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
        results['config_hash'] = config_hash(self.config)
        results['model_repr'] = repr(self.net)
        results['num_parameters'] = sum(p.numel()
                                        for p in self.net.parameters())
        path = self._path('results.json')
        if path is not None:
            write_json(results, path)
        return results


def _mean(values):
    return sum(values) / len(values) if values else 0.0
