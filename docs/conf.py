"""Sphinx configuration of the pyg_mmrec documentation.

Build (warning-free, no network)::

    python -m sphinx -W --keep-going -n -j 1 -b html docs docs/_build/html
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '_ext'))  # local extensions
sys.path.insert(0, os.path.dirname(HERE))       # pyg_mmrec from the checkout

import pyg_mmrec  # noqa: E402

project = 'pyg_mmrec'
author = 'pyg_mmrec contributors'
copyright = 'pyg_mmrec contributors'
version = release = pyg_mmrec.__version__

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
    'sphinx.ext.viewcode',
    'model_catalogue',
    'public_api',
]

# Every name of these packages' __all__ is documented (docs/_ext/public_api).
public_api_packages = [
    'pyg_mmrec.data', 'pyg_mmrec.data.preprocess', 'pyg_mmrec.graphs',
    'pyg_mmrec.nn', 'pyg_mmrec.loader', 'pyg_mmrec.models', 'pyg_mmrec.train',
    'pyg_mmrec.tune',
]

exclude_patterns = ['_build']
html_theme = 'furo'
html_title = f'pyg_mmrec {release}'
html_static_path = []

# autodoc: the docstrings carry the types (Args), so no type hints in the
# signatures; members in the order of each package's __all__.
autodoc_typehints = 'none'
autodoc_member_order = 'bysource'
autodoc_class_signature = 'mixed'
# Only pyg_mmrec's own docstrings (not torch.nn.Module's, inherited).
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = ['Shapes']
# "Returns: (edge_index, value): ..." names the parts, not a type.
napoleon_use_rtype = False

# Broken references to pyg_mmrec's own objects fail the build. Other
# projects' objects cannot be resolved without intersphinx (no network at
# build time) and are ignored, as are two kinds of text that are not
# references at all (napoleon's type words, PyG's :obj: literals).
nitpicky = True
nitpick_ignore_regex = [
    (r'py:.*', r'(torch|torch_geometric|torch_sparse|np|scipy|sklearn'
               r'|optuna|itertools)(\..*)?'),
    # External classes named by their short name in Args types.
    (r'py:class', r'HeteroData|Tensor|Module|MultiheadAttention|Dropout'
                  r'|BatchNorm'),
    # Napoleon's type vocabulary ("int, optional", "callable"), not objects.
    (r'py:class', r'optional|callable'),
    # PyG's docstring convention: :obj:`...` marks a literal (a value, an
    # argument, a shape such as :obj:`[B, I]`), not a reference; only a
    # dotted path into pyg_mmrec is a reference, and a broken one fails.
    (r'py:obj', r'(?s)(?!pyg_mmrec\.).*'),
]
