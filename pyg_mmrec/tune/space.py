r"""Search spaces of :mod:`pyg_mmrec.tune`: the YAML files shipped per model
(``pyg_mmrec/tune/spaces/<model>.yaml``) or given with :obj:`--space`, in
one of two formats.

**Ours**: one entry per setting (a flat key routed to its section as on
the command line, or :obj:`section.key`):

.. code-block:: yaml

    lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # float (log scale)
    knn_k: {low: 5, high: 20, step: 5}           # int: low and high ints
    reg_weight: [0.0, 1.0e-5, 1.0e-4, 1.0e-3]    # a list: categorical
    fixed: {epochs: 200}                         # set in every trial

**MMRec's**: a :obj:`hyper_parameters` list names the keys whose value
lists form an exhaustive grid (each combination queued once in the
study, so that every one runs once, with parallel workers too); the
file's other keys are fixed settings. MMRec's names are mapped to ours
(:obj:`MMREC_NAMES`; e.g. :obj:`learning_rate` to :obj:`lr`,
:obj:`n_layers` to :obj:`num_layers`). Unlike MMRec, the combination is
selected on validation, never on test.

Every key is checked against the model's settings before a trial runs (an
unknown key or a value of the wrong type is refused with the file and the
key)."""
import itertools
import math
import os.path as osp
from typing import Any, Dict, List, Mapping, Optional

from ..config import resolve_config
from ..config.resolve import read_yaml
from ..models import get_model

SPACES_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'spaces')

#: MMRec's setting names that differ from ours.
MMREC_NAMES = {
    'learning_rate': 'lr',
    'n_layers': 'num_layers',
    'n_mm_layers': 'num_mm_layers',
    'n_ui_layers': 'num_ui_layers',
    'embedding_size': 'embedding_dim',
    'train_batch_size': 'batch_size',
    'stopping_step': 'patience',
    'learning_rate_scheduler': 'lr_decay',
}


class SearchSpace:
    r"""A model's search space: per setting a distribution (float or int
    range, or choices), the settings every trial fixes, and whether it is
    an exhaustive grid (MMRec's format).

    Args:
        model (str): The model's registered name.
        params (dict): Setting -> :obj:`{"low", "high", "log", "step"}` or
            a list of choices.
        fixed (dict, optional): Settings of every trial.
        grid (bool): Every combination of the choices once (all params
            must be lists). (default: :obj:`False`)
        source (str, optional): The file, named in errors.
    """
    def __init__(self, model: str, params: Mapping[str, Any],
                 fixed: Optional[Mapping[str, Any]] = None,
                 grid: bool = False, source: Optional[str] = None):
        self.model = get_model(model).cli_name
        self.source = source or f'the search space of {self.model!r}'
        self.params: Dict[str, Any] = {}
        for key, spec in params.items():
            self.params[key] = self._check(key, spec)
        self.fixed = dict(fixed or {})
        self.grid = grid
        if grid and not all(isinstance(s, list) for s in self.params.values()):
            raise ValueError(f"{self.source}: a grid needs a list of values "
                             f"for every key")
        if not self.params:
            raise ValueError(f"{self.source}: no setting to search")
        # Every key and value (the bounds, each choice) is a valid setting:
        for key, spec in self.params.items():
            values = spec if isinstance(spec, list) else [spec['low'],
                                                          spec['high']]
            for value in values:
                self._validate({**self.fixed, key: value})
        self._validate(self.fixed)

    def _check(self, key: str, spec: Any) -> Any:
        where = f"{self.source}: {key}"
        if isinstance(spec, list):
            if not spec:
                raise ValueError(f"{where}: an empty list of choices")
            return spec
        if not isinstance(spec, Mapping) or not {'low', 'high'} <= set(spec):
            raise ValueError(f"{where}: expected a list of choices or "
                             f"{{low, high[, log][, step]}}, got {spec!r}")
        unknown = set(spec) - {'low', 'high', 'log', 'step'}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        low, high = spec['low'], spec['high']
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                   and math.isfinite(v) for v in (low, high)) or low > high:
            raise ValueError(f"{where}: needs numbers low <= high, got "
                             f"{low!r}, {high!r}")
        if spec.get('log') and low <= 0:
            raise ValueError(f"{where}: a log scale needs low > 0")
        return dict(spec)

    def _validate(self, settings: Mapping[str, Any]) -> None:
        try:
            resolve_config(self.model, dict(settings))
        except ValueError as e:
            raise ValueError(f"{self.source}: {e}") from None

    def fix(self, settings: Mapping[str, Any]) -> None:
        r"""Fixes :obj:`settings` in every trial (the command line's), taking
        their keys out of the search."""
        for key in settings:
            self.params.pop(key, None)
        if not self.params:
            raise ValueError(f"{self.source}: every searched setting is "
                             f"fixed by the command line")
        self.fixed.update(settings)
        self._validate(self.fixed)

    def size(self) -> Optional[int]:
        r"""The number of grid combinations (:obj:`None` for a sampled
        space)."""
        if not self.grid:
            return None
        return math.prod(len(v) for v in self.params.values())

    def combinations(self) -> List[Dict[str, Any]]:
        r"""Every combination of the grid."""
        keys = list(self.params)
        return [dict(zip(keys, values)) for values in
                itertools.product(*(self.params[k] for k in keys))]

    def suggest(self, trial) -> Dict[str, Any]:
        r"""One trial's settings (:obj:`fixed` and a value per key, drawn
        through the Optuna :obj:`trial`)."""
        out = dict(self.fixed)
        for key, spec in self.params.items():
            if isinstance(spec, list):
                out[key] = trial.suggest_categorical(key, spec)
            elif (isinstance(spec['low'], int) and isinstance(spec['high'],
                                                              int)
                  and isinstance(spec.get('step', 1), int)):
                out[key] = trial.suggest_int(key, spec['low'], spec['high'],
                                             step=spec.get('step', 1),
                                             log=bool(spec.get('log')))
            else:
                out[key] = trial.suggest_float(key, float(spec['low']),
                                               float(spec['high']),
                                               step=spec.get('step'),
                                               log=bool(spec.get('log')))
        return out

    def __repr__(self) -> str:
        kind = 'grid' if self.grid else 'sampled'
        return (f'{self.__class__.__name__}({self.model}, {kind}, '
                f'params={list(self.params)})')


def load_space(model: str, path: Optional[str] = None) -> SearchSpace:
    r"""The search space of :obj:`model`: the file :obj:`path` (ours or
    MMRec's format), else the one shipped with the package."""
    name = get_model(model).cli_name
    if path is None:
        path = osp.join(SPACES_DIR, f'{name}.yaml')
        if not osp.isfile(path):
            raise ValueError(f"model '{name}' has no shipped search space; "
                             f"give one with --space FILE")
    elif not osp.isfile(path):
        raise FileNotFoundError(f"--space: {path} does not exist")
    raw = read_yaml(path, 'a mapping of settings to search')
    if 'hyper_parameters' in raw:  # MMRec's format
        keys = raw.pop('hyper_parameters')
        if not isinstance(keys, list) or not keys:
            raise ValueError(f"{path}: hyper_parameters must be a non-empty "
                             f"list of keys")
        missing = [k for k in keys if k not in raw]
        if missing:
            raise ValueError(f"{path}: hyper_parameters {missing} have no "
                             f"list of values")
        mapped = {MMREC_NAMES.get(k, k): v for k, v in raw.items()}
        names = [MMREC_NAMES.get(k, k) for k in keys]
        params = {k: v if isinstance(v, list) else [v]
                  for k, v in mapped.items() if k in names}
        fixed = {k: v for k, v in mapped.items() if k not in names}
        return SearchSpace(name, params, fixed, grid=True, source=path)
    fixed = raw.pop('fixed', None) or {}
    if not isinstance(fixed, Mapping):
        raise ValueError(f"{path}: fixed must be a mapping of settings")
    return SearchSpace(name, raw, fixed, source=path)
