"""The ``.. model-catalogue::`` directive: one summary table and one section
per entry of :obj:`pyg_mmrec.models.MODELS`, generated at build time from
the registry and the classes (nothing is written per model).

For each model: its CLI name, its class (a cross-reference to its API
entry), the first sentence of its docstring (the paper), its inputs
(:attr:`requires_features`), mini-batch support (:attr:`supports_subgraph`),
``torchrun`` (every trainable model), the sampled protocol (every model;
"transductive" where the scores of candidates depend on each other, read
from a model built at its default settings on a tiny synthetic dataset)
and a link to the class docstring that lists its differences from the
reference code.
"""
import inspect
import re
from typing import List

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

log = logging.getLogger(__name__)

#: Where the model classes are documented (see docs/api/models.rst).
PUBLIC_MODULE = 'pyg_mmrec.models'
_ABBREVIATIONS = ('e.g.', 'i.e.', 'cf.', 'vs.', 'et al.')


def first_sentence(doc: str) -> str:
    r"""The first sentence of a docstring's first paragraph: up to the first
    full stop outside backquotes and brackets that ends the paragraph or is
    followed by a space (abbreviations such as "e.g." excepted)."""
    paragraph = inspect.cleandoc(doc or '').split('\n\n')[0]
    text = ' '.join(paragraph.split())
    depth, quoted = 0, False
    for i, char in enumerate(text):
        if char == '`':
            quoted = not quoted
        elif quoted:
            continue
        elif char in '([{':
            depth += 1
        elif char in ')]}':
            depth = max(depth - 1, 0)
        elif (char == '.' and depth == 0
              and (i + 1 == len(text) or text[i + 1] == ' ')
              and not text[:i + 1].endswith(_ABBREVIATIONS)):
            return text[:i + 1]
    return text


def anonymous_links(rst: str) -> str:
    r"""Named hyperlinks (```text <url>`_``) as anonymous ones (``__``), so
    that a sentence can appear beside the class docstring that holds it
    without a duplicate target name."""
    return re.sub(r'>`_(?!_)', '>`__', rst)


def public_path(cls: type) -> str:
    r"""The dotted path of the class's API entry."""
    module = __import__(PUBLIC_MODULE, fromlist=['_'])
    if getattr(module, cls.__name__, None) is cls:
        return f'{PUBLIC_MODULE}.{cls.__name__}'
    return f'{cls.__module__}.{cls.__qualname__}'


def default_instance(cls: type, data):
    r"""The model at its default settings on :obj:`data`, or :obj:`None`
    (with a warning) if it cannot be built there."""
    import torch
    torch.manual_seed(0)
    try:
        return cls(data)
    except Exception as e:  # reported: the catalogue then reads the class
        log.warning('model-catalogue: %s(data) failed on the synthetic '
                    'dataset (%s); reading class attributes instead',
                    cls.__name__, e)
        return None


class ModelCatalogue(SphinxDirective):
    r"""``.. model-catalogue::``: the registered models (no arguments)."""
    has_content = False

    def rows(self):
        from pyg_mmrec.data import make_synthetic
        from pyg_mmrec.models import MODELS
        data = make_synthetic(num_users=60, num_items=50, seed=0)
        for name, cls in MODELS.items():
            model = default_instance(cls, data)
            yield name, cls, model if model is not None else cls

    def run(self) -> List[nodes.Node]:
        table = ['.. list-table:: The registered models',
                 '   :header-rows: 1',
                 '   :widths: 12 14 20 20 12 22',
                 '',
                 '   * - CLI name', '     - class', '     - inputs',
                 '     - mini-batch (``--sampler neighbor``)',
                 '     - ``torchrun``', '     - ``--protocol sampled``']
        sections: List[str] = []
        for name, cls, model in self.rows():
            # Re-read the page when a model's source changes.
            self.env.note_dependency(inspect.getsourcefile(cls))
            facts = self.facts(cls, model)
            table += [f'   * - :ref:`{name} <model-{name}>`',
                      f'     - :class:`~{public_path(cls)}`',
                      f'     - {facts["inputs"]}',
                      f'     - {facts["mini-batch"]}',
                      f'     - {facts["torchrun"]}',
                      f'     - {facts["sampled"]}']
            sections += self.section(name, cls, facts)
        lines = StringList()
        source = self.get_source_info()[0]
        for i, line in enumerate(table + [''] + sections):
            lines.append(line, source, i)
        container = nodes.container(classes=['model-catalogue'])
        # Short names in the docstrings (e.g. :class:`MGCN`) resolve as in
        # the API pages, where the classes are documented.
        context = self.env.ref_context
        saved = context.get('py:module')
        context['py:module'] = PUBLIC_MODULE
        try:
            nested_parse_with_titles(self.state, lines, container)
        finally:
            if saved is None:
                context.pop('py:module', None)
            else:
                context['py:module'] = saved
        return container.children

    @staticmethod
    def facts(cls: type, model) -> dict:
        trainable = getattr(cls, 'trainable', True)
        if not trainable:
            mini_batch = 'no (nothing to train)'
            torchrun = 'yes (evaluation only: nothing to train)'
        else:
            mini_batch = ('yes' if cls.supports_subgraph else
                          'no (its encoder reads the whole graph)')
            torchrun = 'yes'
        sampled = 'yes'
        if getattr(model, 'candidate_dependent', False):
            sampled = ('yes, transductive at its defaults: a candidate\'s '
                       'score depends on the other candidates')
        return {
            'inputs': ('interactions + item features'
                       if cls.requires_features else 'interactions only'),
            'mini-batch': mini_batch, 'torchrun': torchrun,
            'sampled': sampled,
        }

    @staticmethod
    def section(name: str, cls: type, facts: dict) -> List[str]:
        path = public_path(cls)
        doc = cls.__doc__ or ''
        differences = (
            f'listed in the :class:`{cls.__name__} <{path}>` docstring'
            if 'Differences from' in doc else
            f'none listed (see the :class:`{cls.__name__} <{path}>` '
            f'docstring)')
        title = f'``{name}``'
        out = [f'.. _model-{name}:', '', title, '-' * len(title), '',
               anonymous_links(first_sentence(doc)), '',
               f':class: :class:`~{path}`',
               f':train: ``python -m pyg_mmrec train --model {name}``',
               f':settings: ``python -m pyg_mmrec models {name}``',
               f':inputs: {facts["inputs"]}',
               f':mini-batch: {facts["mini-batch"]}',
               f':torchrun: {facts["torchrun"]}',
               f':sampled protocol: {facts["sampled"]}',
               f':differences from the reference code: {differences}', '']
        return out


def setup(app):
    app.add_directive('model-catalogue', ModelCatalogue)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
