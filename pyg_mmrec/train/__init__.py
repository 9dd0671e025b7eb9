r"""Training: the :class:`Trainer` (stages, batches, early stopping,
checkpoints), the evaluation protocols (full ranking and sampled
leave-one-out) with their metrics, disk offload, and the distributed
helpers."""
from .divergence import TrainingDiverged
from .evaluator import Evaluator
from .offload import DiskOffload
from .protocols import PROTOCOLS, build_evaluator
from .sampled import SampledEvaluator
from .sources import SAMPLERS, build_source
from .trainer import Trainer

__all__ = [
    'Evaluator',
    'SampledEvaluator',
    'build_evaluator',
    'PROTOCOLS',
    'DiskOffload',
    'Trainer',
    'TrainingDiverged',
    'build_source',
    'SAMPLERS',
]
