r"""The model registry: CLI names to classes, filled by
:func:`register_model`."""
from typing import Callable, Dict, Type, TypeVar

#: Maps the CLI name of every model to its class, in registration order.
MODELS: Dict[str, type] = {}

T = TypeVar('T', bound=type)


def register_model(name: str) -> Callable[[T], T]:
    r"""Class decorator registering a recommender under its CLI
    :obj:`name`.

    Example:
        >>> from pyg_mmrec.models import LightGCN
        >>> @register_model('mymodel')
        ... class MyModel(LightGCN):
        ...     pass
        >>> get_model('MyModel') is MyModel, MyModel.cli_name
        (True, 'mymodel')
    """
    def decorator(cls: T) -> T:
        key = name.lower()
        if key in MODELS and MODELS[key] is not cls:
            raise ValueError(f"model name {key!r} is already registered "
                             f"by {MODELS[key].__name__}")
        MODELS[key] = cls
        cls.cli_name = key
        return cls
    return decorator


def get_model(name: str) -> Type:
    r"""The model class registered under :obj:`name`."""
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: "
                         f"{', '.join(MODELS)}") from None
