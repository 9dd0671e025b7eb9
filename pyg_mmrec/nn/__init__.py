r"""Reusable PyG modules for multimodal recommendation."""
from pyg_mmrec.nn.attention import CoordinateAttention
from pyg_mmrec.nn.bitflip import (BitFlipDiffusion, flip_denoising_loss,
                                  interest_debias, soft_flip_probability)
from pyg_mmrec.nn.contrastive import (info_nce, mdmns_noise_levels,
                                      noisy_view_info_nce)
from pyg_mmrec.nn.counterfactual import (CounterfactualAttention,
                                        CounterfactualEncoder)
from pyg_mmrec.nn.conv import LightGCNConv, LightGCNEncoder, sparse_mm
from pyg_mmrec.nn.denoiser import (BipartiteGuidance, Denoiser,
                                   FlipTransformerDenoiser)
from pyg_mmrec.nn.diffusion import GaussianDiffusion
from pyg_mmrec.nn.embedding import sinusoidal_time_embedding
from pyg_mmrec.nn.features import ModalityFeatures
from pyg_mmrec.nn.flow import (FlowMatchingGenerator, frequency_prior,
                               mask_interpolate)
from pyg_mmrec.nn.losses import bpr_loss, l2_reg, orthogonality_loss
from pyg_mmrec.nn.meta import MetaLowRankTransform
from pyg_mmrec.nn.view_contrast import (multi_level_info_nce,
                                        view_pair_info_nce)
from pyg_mmrec.nn.modality_diffusion import ModalityDiffusion
from pyg_mmrec.nn.negative_sampling import (CausalNegativeSampler,
                                            PopularityNegativeSampler,
                                            item_frequency)

__all__ = [
    'LightGCNConv',
    'LightGCNEncoder',
    'sparse_mm',
    'ModalityFeatures',
    'CoordinateAttention',
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
