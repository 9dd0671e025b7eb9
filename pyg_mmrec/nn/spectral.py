r"""SMORE's spectral filters: element-wise complex gains on the real FFT of
feature vectors over their embedding dimension."""
import torch
from torch import Tensor


class SpectralFilter(torch.nn.Module):
    r"""A learned filter on the discrete Fourier transform of each row over
    its :math:`d` coordinates, from `"Spectrum-based Modality Representation
    Fusion Graph Convolutional Network for Multimodal Recommendation"
    <https://arxiv.org/abs/2412.14978>`_ (SMORE, WSDM 2025):

    .. math::
        \mathbf{x}' = \mathcal{F}^{-1}\Big(\boldsymbol{\phi} \odot
        \prod_{k} \mathcal{F}(\mathbf{x}_k)\Big)

    with :math:`\mathcal{F}` the orthonormal real FFT
    (:obj:`torch.fft.rfft(norm="ortho")`, :math:`d/2 + 1` bins) and
    :math:`\boldsymbol{\phi}` complex gains. With one input it denoises a
    modality (a learned circulant :math:`d \times d` map); with several it
    fuses them (a learned circular convolution, scaled by
    :math:`d^{-1/2}` per extra input by the orthonormal transforms).

    Args:
        channels (int): :math:`d`.

    Shapes:
        - **input:** one or more :obj:`[N, d]`
        - **output:** :obj:`[N, d]`
    """
    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        #: Real and imaginary parts of the gains :obj:`[d // 2 + 1, 2]`.
        self.weight = torch.nn.Parameter(torch.empty(channels // 2 + 1, 2))
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.normal_(self.weight)  # N(0, 1) parts, as the original

    def forward(self, *xs: Tensor) -> Tensor:
        spectrum = None
        for x in xs:
            f = torch.fft.rfft(x.float(), dim=-1, norm='ortho')
            spectrum = f if spectrum is None else spectrum * f
        out = spectrum * torch.view_as_complex(self.weight)
        return torch.fft.irfft(out, n=self.channels, dim=-1, norm='ortho')

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.channels})'
