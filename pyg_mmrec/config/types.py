r"""Type checks of settings against the annotations of the arguments they
set (see :func:`check_type`)."""
import inspect
import typing
from collections import abc
from typing import Any, Mapping


def type_name(annotation: Any) -> str:
    r"""A readable name of a type annotation, *e.g.* :obj:`"float or
    None"`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        return ' or '.join(type_name(a) for a in args)
    if origin is typing.Literal:
        return ' or '.join(map(repr, args))
    if origin in (list, tuple, abc.Sequence) and args:
        return f"a list of {type_name(args[0])}"
    if annotation is type(None):
        return 'None'
    return getattr(annotation, '__name__', str(annotation))


_NO_MATCH = object()

#: Integer settings named like these are sizes: a dimension, a batch or a
#: neighbour count of 0 builds an empty model or loops forever.
SIZE_SUFFIXES = ('_dim', '_size', '_hidden', '_heads', '_ff', '_k')


def _coerce(value: Any, annotation: Any) -> Any:
    # The value as the annotation takes it, or _NO_MATCH.
    if annotation is Any or annotation is inspect.Parameter.empty:
        return value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        for arm in args:
            out = _coerce(value, arm)
            if out is not _NO_MATCH:
                return out
        return _NO_MATCH
    if origin is typing.Literal:
        return value if value in args else _NO_MATCH
    if annotation is type(None):
        return value if value is None else _NO_MATCH
    if annotation is bool:
        return value if isinstance(value, bool) else _NO_MATCH
    if annotation is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)  # 1e3 read as a float
        return (value if isinstance(value, int)
                and not isinstance(value, bool) else _NO_MATCH)
    if annotation is float:
        return (float(value) if isinstance(value, (int, float))
                and not isinstance(value, bool) else _NO_MATCH)
    if annotation is str:
        return value if isinstance(value, str) else _NO_MATCH
    if origin in (list, tuple, abc.Sequence):
        if isinstance(value, str):  # a str is a Sequence[str]
            return value if args and args[0] is str else _NO_MATCH
        if not isinstance(value, (list, tuple)):
            return _NO_MATCH
        item = args[0] if args else Any
        out = [_coerce(v, item) for v in value]
        return _NO_MATCH if any(v is _NO_MATCH for v in out) else out
    if origin in (dict, abc.Mapping) or annotation in (dict, abc.Mapping):
        return value if isinstance(value, Mapping) else _NO_MATCH
    if isinstance(annotation, type):
        return value if isinstance(value, annotation) else _NO_MATCH
    return value  # an annotation this check does not know: unchecked


def check_type(value: Any, annotation: Any, name: str) -> Any:
    r"""The value of setting :obj:`name` as its :obj:`annotation` takes it
    (an integral float such as :obj:`1e3` for an :obj:`int`, an :obj:`int`
    for a :obj:`float`); an integer named like a size (see
    :obj:`SIZE_SUFFIXES`) must be positive.

    Raises:
        ValueError: If :obj:`value` does not have the annotated type,
            naming the setting, the expected type and the value.
    """
    out = _coerce(value, annotation)
    if out is _NO_MATCH:
        raise ValueError(f"setting '{name}' expects {type_name(annotation)}, "
                         f"got {value!r} ({type(value).__name__})")
    if (name.endswith(SIZE_SUFFIXES) and isinstance(out, int)
            and not isinstance(out, bool) and out < 1):
        raise ValueError(f"setting '{name}' is a size and must be >= 1, got "
                         f"{out}")
    return out
