"""Shared helpers of the benchmark scripts: building and timing a model,
the model label of a result row, and copying what a script prints into
``experiments/results/``."""
import contextlib
import os
import sys
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')


def build_and_train(model_name, data, config, epochs, max_batches=None):
    r"""Builds :obj:`model_name` on :obj:`data` with :obj:`config` (its
    batch size and learning rate included) and trains it for :obj:`epochs`
    epochs (of at most :obj:`max_batches` batches) with the deterministic
    kernels of :meth:`Trainer.fit`. Returns the trainer, the build time and
    the time of every epoch."""
    import torch

    from pyg_mmrec.experiment import build_trainer

    torch.use_deterministic_algorithms(True, warn_only=True)  # as Trainer.fit
    t0 = time.perf_counter()
    trainer, _ = build_trainer(model_name, data, config, progress=False)
    build_time = time.perf_counter() - t0
    epoch_times = []
    if trainer.net.trainable:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            trainer.train_epoch(epoch, max_batches=max_batches)
            epoch_times.append(time.perf_counter() - t0)
    return trainer, build_time, epoch_times


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
