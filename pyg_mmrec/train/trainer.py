"""The training loop: BPR batches, Adam, early stopping on validation,
test at the best validation epoch, atomic checkpoints and resume."""
import copy
import itertools
import json
import logging
import os
import resource
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch_geometric.data import HeteroData
from tqdm.auto import tqdm

from ..data.hetero import num_items, split_edge_index
from .checkpoint import atomic_save, rng_state, seed_everything, set_rng_state
from .evaluator import Evaluator
from .sampler import NegativeSampler, bpr_batches

log = logging.getLogger('pyg_mmrec')

SELECT_ON_TEST_LABEL = ('select-on-test (paper-reproduction mode: the best '
                        'epoch is chosen on the test set, which is optimistic)')


def peak_memory_mb() -> float:
    r"""Peak resident memory of this process (MiB), plus the CUDA peak when a
    GPU was used."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak += torch.cuda.max_memory_allocated() / 2**20
    return peak


def memory_allocator() -> str:
    r"""The CPU memory allocator of this process as its environment sets it
    (jemalloc through :obj:`LD_PRELOAD` or glibc, with its settings): it
    changes peak memory and speed a lot, so benchmarks record it."""
    if 'jemalloc' in os.environ.get('LD_PRELOAD', ''):
        conf = os.environ.get('MALLOC_CONF')
        return 'jemalloc' + (f' {conf}' if conf else '')
    tunables = os.environ.get('GLIBC_TUNABLES')
    return 'glibc' + (f' {tunables}' if tunables else '')


class Trainer:
    r"""Fits a :class:`~pyg_mmrec.models.Recommender` with BPR batches and
    Adam, evaluates it on validation every :obj:`eval_every` epochs, stops
    after :obj:`patience` evaluations without improving the selection metric
    and reports the test metrics at the best validation epoch.

    Args:
        model (Recommender): The model.
        data (HeteroData): The dataset it was built from.
        lr (float): Adam learning rate. (default: :obj:`1e-3`)
        weight_decay (float): Adam weight decay. (default: :obj:`0.0`)
        batch_size (int): Training triples per batch. (default: :obj:`2048`)
        epochs (int): Maximum number of epochs. (default: :obj:`1000`)
        patience (int): Evaluations without improvement before stopping.
            (default: :obj:`20`)
        eval_every (int): Epochs between evaluations. (default: :obj:`1`)
        select_on (str): :obj:`"val"` (the honest protocol) or :obj:`"test"`
            (only to reproduce papers that select on test; labelled as such
            in every output). (default: :obj:`"val"`)
        metric (str): The selection metric. (default: :obj:`"recall@20"`)
        ks (Sequence[int]): Cut-offs of the reported metrics.
        eval_batch_size (int): Users per evaluation batch.
        test_masks (Sequence[str] or str): The test masking rules (see
            :class:`~pyg_mmrec.train.Evaluator`): the first gives the
            reported :obj:`"test"` metrics; with several, every test
            evaluation also records each rule's metrics under
            :obj:`"test_by_mask"`. :obj:`"train"` is MMRec's and DiffMM's
            rule (validation items may be recommended at test).
            (default: :obj:`("train_val",)`)
        seed (int): Seed of every random number generator. (default: :obj:`0`)
        device (str): Device to train on. (default: :obj:`"cpu"`)
        checkpoint_dir (str, optional): Where :obj:`last.pt` (full state,
            written atomically after every epoch), :obj:`best.pt` (best model
            weights) and :obj:`results.json` go.
        resume (bool): Continue from :obj:`checkpoint_dir/last.pt` when it
            exists. (default: :obj:`False`)
        config (dict, optional): The run's configuration, stored in the
            results and checked against the checkpoint on resume.
        progress (bool): Show tqdm progress bars. (default: :obj:`True`)
        callbacks (list, optional): Functions :obj:`f(trainer, record)`
            called after every epoch.
    """
    def __init__(
        self,
        model,
        data: HeteroData,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 2048,
        epochs: int = 1000,
        patience: int = 20,
        eval_every: int = 1,
        select_on: str = 'val',
        metric: str = 'recall@20',
        ks: Sequence[int] = (5, 10, 20, 50),
        eval_batch_size: int = 4096,
        test_masks: Sequence[str] = ('train_val', ),
        seed: int = 0,
        device: str = 'cpu',
        checkpoint_dir: Optional[str] = None,
        resume: bool = False,
        config: Optional[Dict[str, Any]] = None,
        progress: bool = True,
        callbacks: Optional[List[Callable]] = None,
    ):
        if select_on not in ('val', 'test'):
            raise ValueError(f"select_on must be 'val' or 'test', got {select_on!r}")
        for name, value in (('batch_size', batch_size), ('eval_every', eval_every)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if epochs < 0 or patience < 0:
            raise ValueError("epochs and patience must be >= 0")
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs a checkpoint_dir")
        self.model = model.to(device)
        self.device = torch.device(device)
        self.lr, self.weight_decay = lr, weight_decay
        self.batch_size, self.epochs, self.patience = batch_size, epochs, patience
        self.eval_every, self.select_on, self.metric = eval_every, select_on, metric
        self.seed, self.checkpoint_dir, self.resume = seed, checkpoint_dir, resume
        self.progress = progress
        self.callbacks = list(callbacks or [])
        self.config = dict(config or {})
        self.evaluator = Evaluator(data, ks=ks, batch_size=eval_batch_size,
                                   test_masks=test_masks)
        if metric not in self.evaluator.metric_names:
            raise ValueError(f"metric {metric!r} is not computed; choose one "
                             f"of {self.evaluator.metric_names}")
        # Batches are drawn on the CPU and moved to the device.
        self.train_edge_index = split_edge_index(data, 'train').cpu()
        self.sampler = NegativeSampler(self.train_edge_index, num_items(data))
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = (torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
                          if params and model.trainable else None)

    # ------------------------------------------------------------------
    def _path(self, name: str) -> Optional[str]:
        if self.checkpoint_dir is None:
            return None
        return os.path.join(self.checkpoint_dir, name)

    def evaluate(self, split: str,
                 test_mask: Optional[str] = None) -> Dict[str, float]:
        r"""Metrics of the current model on :obj:`split` (with the test
        masking rule :obj:`test_mask`, by default the first of
        :obj:`test_masks`)."""
        self.model.eval()
        try:
            return self.evaluator.evaluate(self.model.score, split, test_mask)
        finally:
            self.model.train()

    def _evaluate_test(self, record: Dict[str, Any]) -> None:
        masks = self.evaluator.test_masks
        record['test'] = self.evaluate('test')
        if len(masks) > 1:
            record['test_by_mask'] = {masks[0]: record['test'], **{
                mask: self.evaluate('test', mask) for mask in masks[1:]}}

    def train_epoch(self, epoch: int,
                    max_batches: Optional[int] = None) -> Dict[str, float]:
        r"""One pass over the training pairs (or its first
        :obj:`max_batches` batches, for benchmarks); returns the mean of each
        loss term over the batches."""
        model = self.model
        model.train()
        model.on_epoch_start(epoch)
        batches = bpr_batches(self.train_edge_index, self.sampler, self.batch_size)
        num_batches = -(-self.train_edge_index.size(1) // self.batch_size)
        if max_batches is not None:
            num_batches = min(num_batches, max_batches)
            batches = itertools.islice(batches, num_batches)
        sums: Dict[str, float] = {}
        bar = tqdm(batches, total=num_batches, desc=f'epoch {epoch}',
                   leave=False, disable=not self.progress or None)
        self.optimizer.zero_grad(set_to_none=True)
        for batch in bar:
            terms = model.loss(batch.to(self.device))
            loss = sum(terms.values())
            loss.backward()
            self.optimizer.step()
            # Free the gradients right away, so that the next forward pass
            # (and the evaluation, and the model's epoch hooks) can reuse
            # their memory.
            self.optimizer.zero_grad(set_to_none=True)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
        model.on_epoch_end(epoch)
        means = {name: value / num_batches for name, value in sums.items()}
        means['loss'] = sum(means.values())
        return means

    # ------------------------------------------------------------------
    def _state(self, epoch, history, best, bad_evals) -> Dict[str, Any]:
        return {'epoch': epoch, 'model': self.model.state_dict(),
                'optimizer': self.optimizer.state_dict(), 'rng': rng_state(),
                'history': history, 'best': best, 'bad_evals': bad_evals,
                'config': self.config}

    def _load_checkpoint(self, path: str) -> Dict[str, Any]:
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state.get('config') != self.config:
            old, new = state.get('config') or {}, self.config
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(
                f"{path}: the checkpoint was written with another configuration "
                f"(differs in {', '.join(diff)}); use another checkpoint "
                f"directory or drop --resume")
        self.model.load_state_dict(state['model'])
        self.optimizer.load_state_dict(state['optimizer'])
        set_rng_state(state['rng'])
        return state

    def fit(self) -> Dict[str, Any]:
        r"""Trains until early stopping (or :obj:`epochs`) and returns the
        results: configuration, per-epoch history, best epoch, its validation
        and test metrics, timings and peak memory.

        Runs with :func:`torch.use_deterministic_algorithms` (restored
        afterwards): some CPU kernels (e.g. accumulating index writes) are
        otherwise not reproducible from run to run with several threads."""
        previous = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return self._fit()
        finally:
            torch.use_deterministic_algorithms(previous)

    def _fit(self) -> Dict[str, Any]:
        seed_everything(self.seed)
        history: List[Dict[str, Any]] = []
        best: Dict[str, Any] = {'epoch': 0, 'score': float('-inf'),
                                'val': {}, 'test': {}}
        bad_evals, start = 0, 1
        last = self._path('last.pt')
        if self.optimizer is None:  # nothing to fit (e.g. popularity)
            self.epochs = 0
        elif self.resume and os.path.exists(last):
            state = self._load_checkpoint(last)
            history, best = state['history'], state['best']
            bad_evals, start = state['bad_evals'], state['epoch'] + 1
            log.info("resumed from %s after epoch %d", last, state['epoch'])

        stopped_early = False
        for epoch in range(start, self.epochs + 1):
            if bad_evals >= self.patience and epoch > 1:
                stopped_early = True
                break
            t0 = time.perf_counter()
            losses = self.train_epoch(epoch)
            record: Dict[str, Any] = {'epoch': epoch, 'losses': losses,
                                      'train_time': time.perf_counter() - t0}
            if epoch % self.eval_every == 0 or epoch == self.epochs:
                bad_evals = self._evaluate_epoch(epoch, record, best, bad_evals)
            history.append(record)
            log.info(format_record(record, self.metric))
            if last is not None:
                atomic_save(self._state(epoch, history, best, bad_evals), last)
            for callback in self.callbacks:
                callback(self, record)

        if not best['val']:  # untrained model, or no evaluation happened
            record = {'epoch': 0}
            self._evaluate_epoch(0, record, best, bad_evals)
            history.append(record)
        return self._results(history, best, stopped_early)

    def _evaluate_epoch(self, epoch, record, best, bad_evals) -> int:
        t0 = time.perf_counter()
        record['val'] = self.evaluate('val')
        record['eval_time'] = time.perf_counter() - t0
        if self.select_on == 'test':
            self._evaluate_test(record)
        score = record[self.select_on][self.metric]
        if score > best['score']:
            if 'test' not in record:
                self._evaluate_test(record)
            best.update(epoch=epoch, score=score, val=record['val'],
                        test=record['test'])
            if 'test_by_mask' in record:
                best['test_by_mask'] = record['test_by_mask']
            record['best'] = True
            if self.checkpoint_dir is not None:
                atomic_save(copy.deepcopy(self.model.state_dict()),
                            self._path('best.pt'))
            return 0
        return bad_evals + 1

    def _results(self, history, best, stopped_early) -> Dict[str, Any]:
        train_times = [r['train_time'] for r in history if 'train_time' in r]
        eval_times = [r['eval_time'] for r in history if 'eval_time' in r]
        results = {
            'config': self.config,
            'selection': 'val' if self.select_on == 'val' else SELECT_ON_TEST_LABEL,
            'metric': self.metric,
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
        path = self._path('results.json')
        if path is not None:
            write_json(results, path)
        return results


def _mean(values):
    return sum(values) / len(values) if values else 0.0


def write_json(obj: Any, path: str) -> None:
    r"""Writes :obj:`obj` as JSON atomically."""
    tmp = f'{path}.tmp'
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def format_record(record: Dict[str, Any], metric: str) -> str:
    r"""The per-epoch log line: losses, times and the evaluated metrics."""
    parts = [f"epoch {record['epoch']:4d}"]
    if 'losses' in record:
        losses = record['losses']
        terms = ' '.join(f'{k} {v:.4f}' for k, v in losses.items() if k != 'loss')
        parts.append(f"loss {losses['loss']:.4f} ({terms})")
        parts.append(f"train {record['train_time']:.2f}s")
    for split in ('val', 'test'):
        if split in record:
            m = record[split]
            ndcg = metric.replace('recall', 'ndcg')
            extra = f" {ndcg} {m[ndcg]:.4f}" if ndcg in m and ndcg != metric else ''
            parts.append(f"{split} {metric} {m[metric]:.4f}{extra}")
    if 'eval_time' in record:
        parts.append(f"eval {record['eval_time']:.2f}s")
    if record.get('best'):
        parts.append('*')
    return ' | '.join(parts)
