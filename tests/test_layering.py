"""The package's import graph runs one way: data -> graphs -> nn -> loader
-> models -> train -> config -> experiment -> report/recommend -> tune ->
cli/demo. A subpackage imports only from itself and the layers below it, so
that shared types live below their users (e.g. the batch type below the
models, the pair index below the samplers and the evaluator)."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / 'pyg_mmrec'
LAYERS = ['typing', 'testing', 'data', 'graphs', 'nn', 'loader', 'models',
          'train', 'config', 'experiment', 'report', 'recommend', 'tune',
          'demo', 'cli', '__main__']


def layer_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix('').parts
    return parts[0]


def imported_layers(path: Path, root: Path = PACKAGE):
    tree = ast.parse(path.read_text())
    package = path.relative_to(root.parent).with_suffix('').parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = list(package[:len(package) - node.level + 1])
                module = base + (node.module.split('.') if node.module
                                 else [])
            else:
                module = (node.module or '').split('.')
            if module[0] != 'pyg_mmrec':
                continue
            if len(module) > 1:
                yield module[1], node.lineno
            else:  # from pyg_mmrec import x: x is the layer
                for alias in node.names:
                    yield alias.name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                module = alias.name.split('.')
                if module[0] == 'pyg_mmrec' and len(module) > 1:
                    yield module[1], node.lineno


FILES = sorted(p for p in PACKAGE.rglob('*.py') if p.name != '__init__.py'
               or p.parent != PACKAGE)


@pytest.mark.parametrize('path', FILES, ids=lambda p: str(
    p.relative_to(PACKAGE)))
def test_imports_point_down_the_layers(path):
    own = layer_of(path)
    assert own in LAYERS, f"add {own!r} to LAYERS"
    for layer, line in imported_layers(path):
        assert layer in LAYERS, f"{path}:{line}: unknown layer {layer!r}"
        assert LAYERS.index(layer) <= LAYERS.index(own), (
            f"{path.relative_to(PACKAGE)}:{line} ({own}) imports from "
            f"{layer}, a layer above it")


def test_relative_and_absolute_imports_are_resolved(tmp_path):
    probe = tmp_path / 'pyg_mmrec' / 'nn' / 'probe.py'
    probe.parent.mkdir(parents=True)
    probe.write_text('from ..train.trainer import Trainer\n'
                     'from .conv import sparse_mm\n'
                     'from pyg_mmrec.loader import BPRBatch\n'
                     'from pyg_mmrec import models\n'
                     'import torch\n')
    assert list(imported_layers(probe, tmp_path / 'pyg_mmrec')) == [
        ('train', 1), ('nn', 2), ('loader', 3), ('models', 4)]
