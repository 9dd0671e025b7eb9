from .evaluator import Evaluator
from .offload import DiskOffload
from .sampler import BPRBatch, NegativeSampler, bpr_batches
from .trainer import Trainer

__all__ = [
    'Evaluator',
    'DiskOffload',
    'BPRBatch',
    'NegativeSampler',
    'bpr_batches',
    'Trainer',
]
