r"""Reusable PyG modules for multimodal recommendation."""
from .attention import CoordinateAttention
from .bitflip import (
                                  BitFlipDiffusion,
                                  flip_denoising_loss,
                                  interest_debias,
                                  soft_flip_probability,
)
from .contrastive import info_nce, mdmns_noise_levels, noisy_view_info_nce
from .conv import LightGCNConv, LightGCNEncoder, sparse_mm
from .counterfactual import CounterfactualAttention, CounterfactualEncoder
from .denoiser import BipartiteGuidance, Denoiser, FlipTransformerDenoiser
from .diffusion import GaussianDiffusion
from .embedding import sinusoidal_time_embedding
from .features import ModalityFeatures
from .flow import FlowMatchingGenerator, frequency_prior, mask_interpolate
from .fusion import (
                                  BehaviourAwareFuser,
                                  common_specific_fusion,
                                  sigmoid_gate,
)
from .hypergraph import GumbelHypergraph
from .losses import bpr_loss, l2_reg, orthogonality_loss
from .meta import MetaLowRankTransform
from .modality_diffusion import ModalityDiffusion
from .negative_sampling import CausalNegativeSampler, item_frequency
from .popularity_negatives import PopularityNegativeSampler
from .spectral import SpectralFilter
from .view_contrast import multi_level_info_nce, view_pair_info_nce

__all__ = [
    'LightGCNConv',
    'LightGCNEncoder',
    'sparse_mm',
    'ModalityFeatures',
    'CoordinateAttention',
    'BehaviourAwareFuser',
    'common_specific_fusion',
    'sigmoid_gate',
    'SpectralFilter',
    'GumbelHypergraph',
    'MetaLowRankTransform',
    'CounterfactualAttention',
    'CounterfactualEncoder',
    'bpr_loss',
    'l2_reg',
    'orthogonality_loss',
    'GaussianDiffusion',
    'BitFlipDiffusion',
    'flip_denoising_loss',
    'interest_debias',
    'soft_flip_probability',
    'FlipTransformerDenoiser',
    'Denoiser',
    'BipartiteGuidance',
    'ModalityDiffusion',
    'sinusoidal_time_embedding',
    'info_nce',
    'noisy_view_info_nce',
    'view_pair_info_nce',
    'multi_level_info_nce',
    'mdmns_noise_levels',
    'FlowMatchingGenerator',
    'frequency_prior',
    'mask_interpolate',
    'CausalNegativeSampler',
    'PopularityNegativeSampler',
    'item_frequency',
]
