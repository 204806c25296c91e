"""torchrw.mmdeploy: mmdeploy's rewriters, run by torchrw.

    import torchrw.mmdeploy            # or TORCHRW_PYTHON=torchrw.mmdeploy

imports mmdeploy (with mmdeploy.pytorch) and makes torchrw run its
rewriters.  mmdeploy's code stays as it is; its three registry objects
(``mmdeploy.core.FUNCTION_REWRITER``, ``MODULE_REWRITER``,
``SYMBOLIC_REWRITER``) are the same objects afterwards, wherever they were
imported, but they now work through torchrw:

- what mmdeploy registered before this import (all of mmdeploy.pytorch, or
  more when ``import mmdeploy`` happened earlier) is registered again in
  torchrw, each record with its backend, IR and extra checkers, and with
  the site of its decorator in mmdeploy's source;
- ``register_rewriter``, ``register_rewrite_module`` and
  ``register_symbolic`` called later (mmdeploy.codebase modules imported
  afterwards) register in torchrw directly, at the caller's file and line;
- ``get_context()`` returns torchrw's context of the running rewriter
  (``ctx.cfg``, ``ctx.origin_func``, ``ctx.opset``, ...);
- mmdeploy's ``RewriterContext(cfg, backend=..., opset=...)`` opens a
  torchrw.RewriterContext, and ``patch_model`` leaves the model as it is
  (torchrw wraps modules while the model is traced).

Keyword arguments mmdeploy would set on its context object (``is_pytorch``
given to ``register_rewriter``) are not kept: torchrw's context has the
fields above.  mmdeploy's checkers (``Checker.check(env)``) see mmdeploy's kind of
environment: ``Backend`` and ``IR`` members, the opset and the library
versions mmdeploy's ``collect_env`` reports.  A registration for a backend
torchrw does not know (mmdeploy's ``vacc``, ``sdk``, ``pytorch``) is left
out with a warning naming it.
"""
import ast
import importlib
import os
import sys
import warnings

import torchrw

try:
    import mmdeploy  # noqa: F401  (registers mmdeploy.pytorch's rewriters)
    importlib.import_module("mmdeploy.pytorch")
    from mmdeploy.core.rewriters import rewriter_manager as _manager
    from mmdeploy.core.rewriters import rewriter_utils as _utils
    from mmdeploy.utils.constants import IR, Backend
except Exception as e:  # noqa: BLE001 - any import failure means the same
    raise ImportError(
        "torchrw.mmdeploy: cannot import mmdeploy in %s (%s: %s); install mmdeploy "
        "and mmengine for this interpreter (docs/mmdeploy.md)"
        % (sys.executable, type(e).__name__, e)) from e

_KNOWN_BACKENDS = {b.strip() for b in torchrw.known_backends.split(",")} | {"default"}
_KINDS = (("FUNCTION_REWRITER", "register_rewriter"),
          ("MODULE_REWRITER", "register_rewrite_module"),
          ("SYMBOLIC_REWRITER", "register_symbolic"))


def _value(x):
    """A Backend or IR member, or its string, as the string."""
    return getattr(x, "value", x)


# ---------------------------------------------------------------------------
# Checkers

_envs = {}


def _mmdeploy_env(env):
    """torchrw's checker environment as mmdeploy's collect_env makes it."""
    key = (env["backend"], env["ir"], env["opset"])
    if key not in _envs:
        try:
            backend = Backend.get(env["backend"])
        except KeyError:
            backend = env["backend"]
        ir = IR.get(env["ir"]) if env["ir"] in ("onnx", "torchscript") else IR.DEFAULT
        _envs[key] = _utils.collect_env(backend, ir, opset=env["opset"])
    return _envs[key]


_wrapped = {}


def _as_callable(checker):
    """An mmdeploy Checker as a torchrw extra checker (one per Checker, so
    that the same Checker keeps the same identity in torchrw's keys)."""
    if not isinstance(checker, _utils.Checker):
        return checker
    if checker not in _wrapped:
        def check(env, checker=checker):
            return bool(checker.check(_mmdeploy_env(env)))
        check.__qualname__ = check.__name__ = type(checker).__name__
        _wrapped[checker] = check
    return _wrapped[checker]


def _split_checkers(checkers, backend, ir):
    """mmdeploy's checkers as torchrw's backend, ir and extra checkers:
    a record keeps its backend and IR as BackendChecker and IRChecker."""
    if checkers is None:
        checkers = []
    elif not isinstance(checkers, (list, tuple)):
        checkers = [checkers]
    extra = []
    for c in checkers:
        if type(c) is _utils.BackendChecker:
            backend = c.required_backend
        elif type(c) is _utils.IRChecker:
            ir = c.required_ir
        else:
            extra.append(_as_callable(c))
    return _value(backend), _value(ir), extra


# ---------------------------------------------------------------------------
# Registration


def _register(kind, method, name, obj, backend, ir, checkers, kwargs, site):
    backend, ir, extra = _split_checkers(checkers, backend, ir)
    if backend not in _KNOWN_BACKENDS:
        warnings.warn("torchrw.mmdeploy: %s:%d: %s %s is for backend %r, which torchrw "
                      "does not know (%s); it is left out"
                      % (site[0], site[1], kind, name, backend, torchrw.known_backends),
                      RuntimeWarning, stacklevel=2)
        return obj
    decorator = getattr(getattr(torchrw, kind), method)(
        name, backend=backend, ir=ir, extra_checkers=extra, **kwargs)
    decorator(obj, site=site)
    return obj


def _caller_site():
    frame = sys._getframe(2)
    return frame.f_code.co_filename, frame.f_lineno


def _register_rewriter(func_name, backend="default", ir="default", extra_checkers=None,
                       **kwargs):
    site = _caller_site()
    return lambda obj: _register("FUNCTION_REWRITER", "register_rewriter", func_name, obj,
                                 backend, ir, extra_checkers, {}, site)


def _register_rewrite_module(module_type, backend="default", ir="default",
                             extra_checkers=None, **kwargs):
    site = _caller_site()
    return lambda obj: _register("MODULE_REWRITER", "register_rewrite_module", module_type,
                                 obj, backend, ir, extra_checkers, kwargs, site)


def _register_symbolic(func_name, backend="default", is_pytorch=False,
                       arg_descriptors=None, ir="default", extra_checkers=None, **kwargs):
    site = _caller_site()
    extra = {"is_pytorch": is_pytorch, "arg_descriptors": arg_descriptors}
    return lambda obj: _register("SYMBOLIC_REWRITER", "register_symbolic", func_name, obj,
                                 backend, ir, extra_checkers, extra, site)


# ---------------------------------------------------------------------------
# The sites of what mmdeploy registered before: its decorators, found in the
# source of each registered object.

_REGISTER_METHODS = {m for _, m in _KINDS}


def _name_of(call):
    """The literal name a register_*() call registers, or None."""
    arg = call.args[0] if call.args else next(
        (k.value for k in call.keywords if k.arg in ("func_name", "module_type")), None)
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


_trees = {}


def _decorator_sites(obj):
    """(file, [(name, line) per register_*() decorator, bottom-up: the order
    in which they registered]) of obj's definition; [] when not found."""
    code = getattr(obj, "__code__", None)
    if code is not None:
        path, first = code.co_filename, code.co_firstlineno
    else:
        path = getattr(sys.modules.get(getattr(obj, "__module__", None)), "__file__", None)
        first = None
    if not path or not os.path.exists(path):
        return path or "<unknown>", []
    if path not in _trees:
        try:
            with open(path, encoding="utf-8") as f:
                _trees[path] = ast.parse(f.read(), path)
        except (OSError, SyntaxError, ValueError):
            _trees[path] = None
    tree = _trees[path]
    for node in ast.walk(tree) if tree else ():
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if node.name != getattr(obj, "__name__", None):
            continue
        lines = [d.lineno for d in node.decorator_list] + [node.lineno]
        if first is not None and first not in lines:
            continue
        sites = [(_name_of(d), d.lineno) for d in reversed(node.decorator_list)
                 if isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute)
                 and d.func.attr in _REGISTER_METHODS]
        return path, sites
    return path, []


def _mirror(registry, kind, method):
    """Registers in torchrw what mmdeploy's registry holds."""
    used = {}
    count = 0
    for name, records in list(registry._registry._rewrite_records.items()):
        for record in records:
            obj = record["_object"]
            path, sites = _decorator_sites(obj)
            taken = used.setdefault(id(obj), set())
            line = next((ln for n, ln in sites if ln not in taken and n in (name, None)), None)
            if line is None:
                code = getattr(obj, "__code__", None)
                line = code.co_firstlineno if code is not None else 0
            taken.add(line)
            if kind == "SYMBOLIC_REWRITER":
                kwargs = {k: record.get(k) for k in ("is_pytorch", "arg_descriptors")}
            elif kind == "MODULE_REWRITER":  # the wrapper's keyword arguments
                kwargs = {k: v for k, v in record.items() if k not in ("_object", "_checkers")}
            else:
                kwargs = {}
            _register(kind, method, name, obj, "default", "default", record["_checkers"],
                      kwargs, (path, line))
            count += 1
    return count


# ---------------------------------------------------------------------------
# mmdeploy's RewriterContext and patch_model, through torchrw


_active = []  # the torchrw.RewriterContext each mmdeploy RewriterContext opened


def _enter(cfg=None, env=None, **kwargs):
    env = env or {}
    ir = _value(env.get("ir", "default"))
    ctx = torchrw.RewriterContext(cfg=cfg if cfg is not None else {},
                                  backend=_value(env.get("backend", "default")),
                                  ir=None if ir == "default" else ir,
                                  opset=int(kwargs.get("opset", 0) or 0))
    ctx.__enter__()
    _active.append(ctx)


def _exit():
    if _active:
        _active.pop().__exit__(None, None, None)


def _nothing(*args, **kwargs):
    return None


def _patch_model(model, *args, **kwargs):
    return model


def _switch():
    function = _manager.FUNCTION_REWRITER
    module = _manager.MODULE_REWRITER
    symbolic = _manager.SYMBOLIC_REWRITER
    counts = {kind: _mirror(getattr(_manager, kind), kind, method) for kind, method in _KINDS}
    # Instance attributes: every module that imported these objects sees them.
    function.register_rewriter = _register_rewriter
    module.register_rewrite_module = _register_rewrite_module
    symbolic.register_symbolic = _register_symbolic
    function.get_context = symbolic.get_context = torchrw.get_context
    function.enter, function.exit = _enter, _exit
    symbolic.enter, symbolic.exit = _nothing, _nothing
    module.patch_model = _patch_model
    return counts


#: How many of mmdeploy's records were registered in torchrw when this
#: module was imported, per registry.
mirrored = _switch()
