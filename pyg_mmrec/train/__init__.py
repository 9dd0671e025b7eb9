r"""Training: the :class:`Trainer` (stages, batches, early stopping,
checkpoints), the evaluation protocols (full ranking and sampled
leave-one-out) with their metrics, disk offload, and the distributed
helpers."""
from .evaluator import Evaluator, build_evaluator
from .offload import DiskOffload
from .sampled import SampledEvaluator
from .trainer import Trainer

__all__ = [
    'Evaluator',
    'SampledEvaluator',
    'build_evaluator',
    'DiskOffload',
    'Trainer',
]
