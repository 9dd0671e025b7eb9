"""Shared helpers of the benchmark scripts: building and timing a model,
the model label of a result row, and the one writer of what the scripts
measure: :func:`write_results` (``<path>.json`` and ``<path>.md``),
:func:`read_rows` (the rows a script appends to) and :func:`results_file`
(what a script prints, copied into ``experiments/results/``)."""
import contextlib
import json
import os
import statistics
import sys
import time
from typing import Any, List, Optional

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')


class Clock:
    r"""Wall and CPU seconds (:func:`time.process_time`, this process's
    threads together) of a block: on a shared machine the wall time moves
    with the load, the CPU seconds much less.

    Example:
        >>> with Clock() as clock:
        ...     trainer.train_epoch(1)
        >>> clock.wall, clock.cpu
    """
    def __enter__(self) -> 'Clock':
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


class BatchReadings:
    r"""Wall and CPU clock readings each time :obj:`source` yields a batch
    (wraps its :meth:`batches`): the intervals between readings are one
    training step plus sampling the next batch, without the epoch's setup
    (the model's epoch hooks, a source's per-epoch sampling graph)."""
    def __init__(self, source):
        self.readings = []
        #: The nodes (users + items) of each batch's subgraph, if any.
        self.subgraph_nodes = []
        inner = source.batches

        def batches(*args, **kwargs):
            for batch in inner(*args, **kwargs):
                self.readings.append((time.perf_counter(),
                                      time.process_time()))
                sub = getattr(batch, 'subgraph', None)
                if sub is not None:
                    self.subgraph_nodes.append(sub.user_id.numel() +
                                               sub.item_id.numel())
                yield batch
        source.batches = batches

    def steady(self):
        r"""Median wall and CPU seconds between consecutive batches (the
        steady step), or :obj:`None` with fewer than two readings."""
        if len(self.readings) < 2:
            return None
        walls, cpus = zip(*(
            (b[0] - a[0], b[1] - a[1])
            for a, b in zip(self.readings, self.readings[1:])))
        return statistics.median(walls), statistics.median(cpus)


def build_and_train(model_name, data, config, epochs, max_batches=None,
                    readings=None, prepare=None):
    r"""Builds :obj:`model_name` on :obj:`data` with :obj:`config` (its
    batch size and learning rate included) and trains it for :obj:`epochs`
    epochs (of at most :obj:`max_batches` batches) with the deterministic
    kernels of :meth:`Trainer.fit`. Returns the trainer, the run's record
    (every setting of every section, see
    :func:`~pyg_mmrec.experiment.build_trainer`), the build's
    :class:`Clock` and one :class:`Clock` per epoch. A list as
    :obj:`readings` receives the recommender source's
    :class:`BatchReadings`; :obj:`prepare` (optional) is called with the
    trainer before the first epoch."""
    import torch

    from pyg_mmrec.experiment import build_trainer

    torch.use_deterministic_algorithms(True, warn_only=True)  # as Trainer.fit
    with Clock() as build:
        trainer, record = build_trainer(model_name, data, config,
                                        progress=False)
    epochs_run = []
    if readings is not None:
        readings.append(BatchReadings(trainer.source))
    if prepare is not None:
        prepare(trainer)
    if trainer.net.trainable:
        for epoch in range(1, epochs + 1):
            with Clock() as clock:
                trainer.train_epoch(epoch, max_batches=max_batches)
            epochs_run.append(clock)
    return trainer, record, build, epochs_run


def model_label(row) -> str:
    r"""The model of a benchmark row with its setting overrides and, when it
    is not plain glibc, the memory allocator it ran with."""
    label = row['model']
    if row.get('overrides'):
        label += ' (' + ', '.join(f'{k}={v}' for k, v in
                                  row['overrides'].items()) + ')'
    if row.get('allocator', 'glibc') != 'glibc':
        label += f" [{row['allocator']}]"
    return label


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for s in self.streams:
            s.write(text)

    def flush(self):
        for s in self.streams:
            s.flush()


@contextlib.contextmanager
def results_file(name: str):
    r"""Within the block, everything printed also goes to
    :obj:`experiments/results/<name>`."""
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, name), 'w') as f:
        old, sys.stdout = sys.stdout, _Tee(sys.stdout, f)
        try:
            yield
        finally:
            sys.stdout = old


def results_path(name: str) -> str:
    r"""The path of :obj:`name` in :obj:`experiments/results/` (without an
    extension, as :func:`write_results` takes it)."""
    return os.path.join(RESULTS, name)


def _write_text(path: str, text: str) -> None:
    r"""Writes :obj:`text` to :obj:`path` atomically, as
    :func:`~pyg_mmrec.train.records.write_json` writes JSON: into
    :obj:`<path>.tmp`, renamed over :obj:`path`, so a reader never sees
    half a file and a failed write leaves the previous one."""
    tmp = f'{path}.tmp'
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with open(tmp, 'w') as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_results(path: str, data: Any,
                  markdown: Optional[str] = None) -> None:
    r"""Writes a script's results, each file atomically: :obj:`data` to
    :obj:`<path>.json` by :func:`~pyg_mmrec.train.records.write_json`
    (strict JSON indented by one space: a float that is not finite becomes
    :obj:`null`) and, when given, :obj:`markdown` to :obj:`<path>.md`.
    :obj:`path` has no extension; a script's default is
    :func:`results_path`."""
    from pyg_mmrec.train.records import write_json

    write_json(data, path + '.json')
    if markdown is not None:
        _write_text(path + '.md', markdown)


def read_rows(path: str) -> List[Any]:
    r"""The rows of :obj:`<path>.json` written by :func:`write_results`
    (a script that appends rows reads them first), or an empty list when
    there is no such file."""
    if not os.path.exists(path + '.json'):
        return []
    with open(path + '.json') as f:
        return json.load(f)
