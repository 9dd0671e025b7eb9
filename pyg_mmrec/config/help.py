r"""One line of help per setting, from the docstrings of what the
settings feed (``python -m pyg_mmrec models NAME``)."""
import inspect
import re
from typing import Dict

from ..models import get_model
from ..train import Trainer, build_evaluator, build_source
from .resolve import model_defaults
from .signatures import all_settings
from .types import type_name


def argument_help(function) -> Dict[str, str]:
    r"""The first sentence of each argument's entry in the :obj:`Args:`
    section of :obj:`function`'s docstring (or its class's), without its
    :obj:`(default: ...)`."""
    doc = inspect.getdoc(function) or ''
    if 'Args:' not in doc and inspect.isfunction(function):
        owner = getattr(inspect.getmodule(function),
                        function.__qualname__.split('.')[0], None)
        doc = inspect.getdoc(owner) or '' if owner is not function else doc
    out: Dict[str, str] = {}
    lines = doc.split('Args:', 1)[1].splitlines() if 'Args:' in doc else []
    name, indent, text = None, None, []
    for line in lines + ['']:
        stripped = line.strip()
        depth = len(line) - len(line.lstrip())
        match = re.match(r'(\w+) \(([^)]*)\):\s*(.*)', stripped)
        if match and (indent is None or depth <= indent):
            if name:
                out[name] = _first_sentence(' '.join(text))
            name, indent, text = match.group(1), depth, [match.group(3)]
        elif name and stripped and depth > indent:
            text.append(stripped)
        elif name:  # the end of the section
            out[name] = _first_sentence(' '.join(text))
            name = None
            if stripped and depth <= (indent or 0) and stripped.endswith(':'):
                break
    return out


def _first_sentence(text: str) -> str:
    text = re.sub(r'\(default: .*?\)\s*$', '', text).strip()
    text = re.sub(r':(obj|class|func|meth|attr|math):`~?([^`]*)`', r'\2',
                  text)
    match = re.match(r'(.+?\.)(\s|$)', text)
    return (match.group(1) if match else text).strip()


def format_settings_help(model: str) -> str:
    r"""Every setting of :obj:`model`, by section: its default and one line
    of help from the docstring of the function it feeds (``python -m
    pyg_mmrec models NAME``)."""
    helps = {'model': {}, 'trainer': argument_help(Trainer),
             'loader': argument_help(build_source),
             'evaluation': argument_help(build_evaluator)}
    for cls in reversed(get_model(model).__mro__):
        if cls.__doc__:
            helps['model'].update(argument_help(cls))
    own_defaults = model_defaults(model)
    lines = []
    for section, settings in all_settings(model).items():
        lines.append(f"{section}:")
        for key, setting in settings.items():
            mine = own_defaults.get(section, {})
            default = mine.get(key, setting.default)
            shown = ('required' if default is inspect.Parameter.empty
                     else repr(default))
            own = ' (the model\'s)' if key in mine else ''
            lines.append(f"  {key} = {shown}{own}  "
                         f"[{type_name(setting.annotation)}]")
            if helps[section].get(key):
                lines.append(f"      {helps[section][key]}")
    return '\n'.join(lines)
