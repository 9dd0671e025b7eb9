from .evaluator import Evaluator
from .sampler import BPRBatch, NegativeSampler, bpr_batches
from .trainer import Trainer

__all__ = [
    'Evaluator',
    'BPRBatch',
    'NegativeSampler',
    'bpr_batches',
    'Trainer',
]
