r"""Reusable PyG modules for multimodal recommendation."""
from pyg_mmrec.nn.conv import LightGCNConv, LightGCNEncoder
from pyg_mmrec.nn.flow import (FlowMatchingGenerator, frequency_prior,
                               mask_interpolate, sinusoidal_time_embedding)
from pyg_mmrec.nn.negative_sampling import (CausalNegativeSampler,
                                            item_frequency)

__all__ = [
    'LightGCNConv',
    'LightGCNEncoder',
    'FlowMatchingGenerator',
    'sinusoidal_time_embedding',
    'frequency_prior',
    'mask_interpolate',
    'CausalNegativeSampler',
    'item_frequency',
]
