r"""TensorBoard scalars of a run (the :obj:`tensorboard` package, the
:obj:`tensorboard` extra): a :class:`~pyg_mmrec.train.Trainer` callback."""
from typing import Any, Dict


class TensorBoardScalars:
    r"""Writes each epoch's loss terms (:obj:`loss/<term>`, stages as
    :obj:`loss/<stage>/<term>`), evaluation metrics (:obj:`val/<metric>`,
    and :obj:`test/<metric>` when the run computes them) and training
    seconds (:obj:`time/train`) to TensorBoard event files in
    :obj:`log_dir`, at step = epoch. Pass it to
    :meth:`~pyg_mmrec.train.Trainer.fit` as a callback; :meth:`close` (or
    garbage collection) flushes the file.

    Args:
        log_dir (str): The run's event folder.
    """
    def __init__(self, log_dir: str):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("--tensorboard needs TensorBoard: pip install "
                             "tensorboard (or pyg_mmrec[tensorboard])"
                             ) from None
        self.log_dir = log_dir
        self.writer = SummaryWriter(log_dir=log_dir)

    def __call__(self, trainer, record: Dict[str, Any]) -> None:
        epoch = record['epoch']
        for term, value in record.get('losses', {}).items():
            self.writer.add_scalar(f'loss/{term}', value, epoch)
        for split in ('val', 'test'):
            for metric, value in (record.get(split) or {}).items():
                self.writer.add_scalar(f'{split}/{metric}', value, epoch)
        if 'train_time' in record:
            self.writer.add_scalar('time/train', record['train_time'], epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
