r"""Reusable PyG modules for multimodal recommendation."""
from pyg_mmrec.nn.conv import LightGCNConv, LightGCNEncoder

__all__ = [
    'LightGCNConv',
    'LightGCNEncoder',
]
