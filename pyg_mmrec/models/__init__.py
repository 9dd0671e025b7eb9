"""The recommenders and their registry (see :func:`register_model`)."""
from .base import Recommender, Stage
from .bm3 import BM3
from .diffmm import DiffMM
from .diffmm_core import DiffMMCore
from .dragon import DRAGON
from .fmcns import FMCNS
from .freedom import FREEDOM
from .genrec import GenRec
from .lattice import LATTICE
from .lgmrec import LGMRec
from .lightgcn import LightGCN
from .mcln import MCLN
from .mdmns import MDMNS
from .mgcn import MGCN
from .pop import Pop
from .rearm import REARM
from .registry import MODELS, get_model, register_model
from .smore import SMORE
from .vbpr import VBPR

__all__ = ['Recommender', 'Stage', 'DiffMMCore', 'Pop', 'LightGCN', 'VBPR',
           'FREEDOM', 'FMCNS', 'MDMNS', 'REARM', 'GenRec', 'MCLN', 'BM3',
           'MGCN', 'SMORE', 'LATTICE', 'LGMRec', 'DRAGON', 'DiffMM',
           'MODELS', 'get_model', 'register_model']
