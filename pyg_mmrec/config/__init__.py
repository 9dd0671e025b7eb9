r"""Settings: a model's configuration by section, validated against the
functions it feeds (names and types), and where it is read from.

A configuration has four sections, each the keyword arguments of what it
builds:

* :obj:`model`: the model's constructor;
* :obj:`trainer`: the keyword-only arguments of
  :class:`~pyg_mmrec.train.Trainer` (optimiser, epochs, early stopping);
* :obj:`loader`: those of :func:`~pyg_mmrec.train.build_source` (the
  batches: sampler, batch size, neighbours, negatives);
* :obj:`evaluation`: those of :func:`~pyg_mmrec.train.build_evaluator`
  (protocol, cut-offs, test masks, and the model selection: split and
  metric).

**Precedence**, lowest first: the functions' defaults < the model's own
(:func:`model_defaults`, ``pyg_mmrec/config/models/<model>.yaml``) < the
YAML file (:obj:`--config`, or :obj:`<dataset>.yaml` of
:func:`config_dirs` when it has a section for the model: the current
directory's :obj:`experiments/configs/`, then the package's
:obj:`pyg_mmrec/config/datasets/`) < the command line
(:obj:`--key value`; a flat key goes to the one section that has it,
:obj:`--section.key value` names the section). Every value is checked
against the annotation of the argument it sets (:func:`check_type`):
:obj:`--lr abc` or :obj:`batch_size: 1.5` is refused with the key, the
expected type and the value. A run records every setting
(:func:`complete_config`)."""
from .help import argument_help, format_settings_help
from .resolve import (
                      MODEL_CONFIGS,
                      complete_config,
                      config_dirs,
                      demo_settings,
                      find_config,
                      load_config,
                      model_defaults,
                      normalize_config,
                      parse_settings,
                      parse_value,
                      resolve_config,
)
from .signatures import (
                      SECTIONS,
                      Setting,
                      all_settings,
                      config_sections,
                      model_keys,
                      model_settings,
                      runner_settings,
                      trainer_sections,
)
from .types import SIZE_SUFFIXES, check_type, type_name

__all__ = [
    'SECTIONS',
    'Setting',
    'all_settings',
    'config_sections',
    'model_keys',
    'model_settings',
    'runner_settings',
    'trainer_sections',
    'check_type',
    'type_name',
    'SIZE_SUFFIXES',
    'parse_value',
    'parse_settings',
    'normalize_config',
    'resolve_config',
    'complete_config',
    'model_defaults',
    'demo_settings',
    'MODEL_CONFIGS',
    'load_config',
    'config_dirs',
    'find_config',
    'argument_help',
    'format_settings_help',
]
