"""Helpers shared by the trainer tests."""


class Interrupt:
    """A trainer callback that raises :class:`KeyboardInterrupt` (Ctrl-C)
    after the given epoch."""
    def __init__(self, after_epoch):
        self.after_epoch = after_epoch

    def __call__(self, trainer, record):
        if record['epoch'] == self.after_epoch:
            raise KeyboardInterrupt


def strip_times(history):
    """The history without its timings (which differ from run to run)."""
    return [{k: v for k, v in r.items() if not k.endswith('_time')}
            for r in history]
