r"""Test decorators for optional dependencies, as
:mod:`torch_geometric.testing` has them: a test that needs a package or a
device is skipped with a reason where it is absent and runs where it is
present (CI installs every extra)."""
import importlib
import importlib.util
from typing import Callable

import pytest
import torch


def has_package(name: str) -> bool:
    r"""Whether :obj:`name` can be imported (an installed package that fails
    to import, e.g. torchvision built for another torch, counts as
    absent)."""
    if importlib.util.find_spec(name) is None:
        return False
    try:
        importlib.import_module(name)
    except Exception:
        return False
    return True


def with_package(*names: str) -> Callable:
    r"""Skips the decorated test unless every package of :obj:`names` can
    be imported, *e.g.* :obj:`@with_package('torch_sparse')`."""
    missing = [name for name in names if not has_package(name)]
    return pytest.mark.skipif(
        bool(missing), reason=f"package(s) {', '.join(missing)} not "
        f"installed (or not importable)")


#: Skips the decorated test unless a CUDA device is available.
with_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                               reason='CUDA needed')
