"""Shared fixtures: where the real datasets are.

The real data location is one setting, env ``PYG_MMREC_DATA``, defaulting to
``../shared/data`` relative to the repository root. Tests that need a real
dataset are skipped when it is absent, unless ``PYG_MMREC_REQUIRE_DATA=1``,
in which case they fail.
"""
import os
from pathlib import Path

import pytest

# Helper modules whose assertions report their values, as in a test file.
pytest.register_assert_rewrite('leakage_helpers')

REPO_ROOT = Path(__file__).resolve().parent.parent


def missing_data(reason: str) -> None:
    r"""Skips the current test with :obj:`reason`, or fails it when env
    ``PYG_MMREC_REQUIRE_DATA=1``."""
    if os.environ.get('PYG_MMREC_REQUIRE_DATA') == '1':
        pytest.fail(f"{reason} (PYG_MMREC_REQUIRE_DATA=1)")
    pytest.skip(reason)


@pytest.fixture(scope='session')
def data_root() -> Path:
    """The real-data root: env ``PYG_MMREC_DATA`` or ``../shared/data``."""
    env = os.environ.get('PYG_MMREC_DATA')
    return Path(env) if env else (REPO_ROOT / '..' / 'shared' / 'data')


@pytest.fixture
def real_dataset(data_root):
    """Returns a function ``name -> Path`` of a real dataset's folder that
    skips (or fails, see :func:`missing_data`) when it is absent."""
    def get(name: str) -> Path:
        if not data_root.is_dir():
            missing_data(f"real data root {data_root} not found; set "
                         f"PYG_MMREC_DATA")
        folder = data_root / name
        if not folder.is_dir() or not any(folder.iterdir()):
            missing_data(f"real dataset {name!r} not found under {data_root}")
        return folder
    return get
