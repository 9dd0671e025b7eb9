"""The recommenders and their registry."""
from typing import Dict, Type

from .base import Recommender
from .fmcns import FMCNS
from .freedom import FREEDOM
from .lightgcn import LightGCN
from .mdmns import MDMNS
from .pop import Pop
from .vbpr import VBPR

#: Maps the CLI name of every model to its class.
MODELS: Dict[str, Type[Recommender]] = {
    'pop': Pop,
    'lightgcn': LightGCN,
    'vbpr': VBPR,
    'freedom': FREEDOM,
    'fmcns': FMCNS,
    'mdmns': MDMNS,
}


def get_model(name: str) -> Type[Recommender]:
    r"""The model class registered under :obj:`name`."""
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: "
                         f"{', '.join(MODELS)}") from None


__all__ = ['Recommender', 'Pop', 'LightGCN', 'VBPR', 'FREEDOM', 'FMCNS', 'MDMNS',
           'MODELS',
           'get_model']
