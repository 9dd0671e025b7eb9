"""Copies what a benchmark script prints into ``experiments/results/``."""
import contextlib
import os
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')


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
