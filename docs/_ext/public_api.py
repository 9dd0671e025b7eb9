"""The public API of pyg_mmrec: every name of a package's ``__all__`` is
documented, and a reference by the defining module's path resolves to the
public entry.

* autodoc skips a member without a docstring, and reads the ``#:`` comment
  of a constant from the documented module only (here a package's
  ``__init__``, which merely imports it). Every exported name of the
  packages in :obj:`public_api_packages` is kept, and an exported constant
  is documented with the ``#:`` comment of the module that defines it.
* Objects are documented under their package (``pyg_mmrec.data.load_dataset``)
  while docstrings may name them by the module that defines them
  (``pyg_mmrec.data.dataset.load_dataset``, or ``load_dataset`` inside
  ``pyg_mmrec.data.dataset``'s own docstring). A Python reference that
  Sphinx cannot resolve is imported and, when it is the same object as a
  documented entry of the same name, linked to that entry. A reference to
  an object that is documented nowhere still fails the nitpicky build.
"""
import importlib
import sys
from collections import defaultdict

from sphinx.pycode import ModuleAnalyzer
from sphinx.util.nodes import make_refnode

_MISSING = object()


def _packages(app):
    return [importlib.import_module(name)
            for name in app.config.public_api_packages]


def _exported(app, name, obj):
    return any(name in getattr(pkg, '__all__', ())
               and getattr(pkg, name, _MISSING) is obj
               for pkg in _packages(app))


def keep_exported(app, what, name, obj, skip, options):
    excluded = getattr(options, 'exclude_members', None) or ()
    if (what == 'module' and skip and name not in excluded
            and _exported(app, name, obj)):
        return False
    return None


def _defining_comment(package, name, obj):
    r"""The ``#:`` comment of :obj:`name` in the submodule of
    :obj:`package` that defines it, or :obj:`None`."""
    for module_name, module in sorted(sys.modules.items()):
        if (not module_name.startswith(package + '.')
                or getattr(module, name, _MISSING) is not obj):
            continue
        try:
            docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
        except Exception:  # a compiled or source-less module
            continue
        if ('', name) in docs:
            return list(docs[('', name)])
    return None


def document_constants(app):
    r"""Gives every exported constant of the public packages an attribute
    comment in its package's (cached) analyzer: the defining module's
    ``#:`` comment, or an empty one, so that autodoc documents it."""
    for package in app.config.public_api_packages:
        module = importlib.import_module(package)
        analyzer = ModuleAnalyzer.for_module(package)
        analyzer.analyze()
        for name in getattr(module, '__all__', ()):
            obj = getattr(module, name)
            if callable(obj) or ('', name) in analyzer.attr_docs:
                continue
            analyzer.attr_docs[('', name)] = (
                _defining_comment(package, name, obj) or [''])


def _import(path):
    r"""The object at a dotted path, or :obj:`_MISSING`."""
    parts = path.split('.')
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:i]))
        except ImportError:
            continue
        except Exception:  # importing must never break the build
            return _MISSING
        for attr in parts[i:]:
            obj = getattr(obj, attr, _MISSING)
            if obj is _MISSING:
                return _MISSING
        return obj
    return _MISSING


def _by_last_name(domain):
    r"""The documented Python objects by their last name component."""
    index = defaultdict(list)
    for name, entry in domain.objects.items():
        if name.startswith('pyg_mmrec.') and not entry.aliased:
            index[name.rpartition('.')[2]].append((name, entry))
    return index


def resolve_by_object(app, env, node, contnode):
    if node.get('refdomain') != 'py':
        return None
    target = node['reftarget'].lstrip('.~')
    module, cls = node.get('py:module'), node.get('py:class')
    candidates = [target]
    if module:
        candidates.append(f'{module}.{target}')
        if cls:
            candidates.append(f'{module}.{cls}.{target}')
    domain = env.get_domain('py')
    documented = _by_last_name(domain).get(target.rpartition('.')[2], [])
    if not documented:
        return None
    for candidate in candidates:
        if not candidate.startswith('pyg_mmrec.'):
            continue
        obj = _import(candidate)
        if obj is _MISSING or isinstance(obj, (str, int, float, bool)):
            continue
        for name, entry in documented:
            if _import(name) is obj:
                return make_refnode(app.builder, node['refdoc'],
                                    entry.docname, entry.node_id, contnode,
                                    name)
    return None


def setup(app):
    app.add_config_value('public_api_packages', [], 'env')
    app.connect('autodoc-skip-member', keep_exported)
    app.connect('builder-inited', document_constants)
    app.connect('missing-reference', resolve_by_object)
    return {'parallel_read_safe': True, 'parallel_write_safe': True}
