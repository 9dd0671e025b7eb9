"""pyg_mmrec: multimodal recommendation on PyTorch Geometric."""
__version__ = '0.1.0'
