"""The recommenders and their registry (see :func:`register_model`)."""
from .registry import MODELS, get_model, register_model
from .base import Recommender, Stage
from .diffmm_core import DiffMMCore
from .pop import Pop
from .lightgcn import LightGCN
from .vbpr import VBPR
from .freedom import FREEDOM
from .fmcns import FMCNS
from .mdmns import MDMNS
from .rearm import REARM
from .genrec import GenRec
from .mcln import MCLN

__all__ = ['Recommender', 'Stage', 'DiffMMCore', 'Pop', 'LightGCN', 'VBPR',
           'FREEDOM', 'FMCNS', 'MDMNS', 'REARM', 'GenRec', 'MCLN', 'MODELS',
           'get_model', 'register_model']
