"""torchrw: per-backend rewriters applied while a model is traced for export.

This package is a loader.  torchrw's runtime is built per torch
(libtorchrw_runtime-torch<X.Y>.so); importing the package loads the one
built for the torch this interpreter has, as the extension module
``torchrw``, which takes this package's place in ``sys.modules``.  So
``from torchrw import FUNCTION_REWRITER`` reaches the same registries the
preloaded libtorchrw.so uses.
"""
import importlib.machinery
import importlib.util
import os
import re
import sys

from torchrw import _build

_PREFIX, _SUFFIX = "libtorchrw_runtime-torch", ".so"


def _series(version):
    m = re.match(r"(\d+)\.(\d+)", version)
    return "%s.%s" % m.groups() if m else None


def _load():
    import torch

    version = str(torch.__version__)
    libdir = os.path.normpath(os.path.join(os.path.dirname(__file__), _build.LIBDIR))
    path = os.path.join(libdir, "%s%s%s" % (_PREFIX, _series(version), _SUFFIX))
    if not os.path.exists(path):
        try:
            names = os.listdir(libdir)
        except OSError:
            names = []
        have = sorted(n[len(_PREFIX):-len(_SUFFIX)] for n in names
                      if n.startswith(_PREFIX) and n.endswith(_SUFFIX))
        built = "torch " + ", ".join(have) if have else "none"
        series = tuple(int(p) for p in _series(version).split("."))
        oldest, newest = (tuple(int(p) for p in v.split(".")) for v in _build.KNOWN)
        if not oldest <= series <= newest:
            raise ImportError(
                "torchrw: no runtime for torch %s (the torch of %s) in %s, and torchrw "
                "knows torch %s to %s only: its torch adapter (shim/adapter) needs this "
                "torch's facts first; built there: %s"
                % (version, sys.executable, libdir, _build.KNOWN[0], _build.KNOWN[1], built))
        raise ImportError(
            "torchrw: no runtime for torch %s (the torch of %s) in %s; built there: %s. "
            "Build it: %s" % (version, sys.executable, libdir, built,
                              _build.BUILD_HINT % sys.executable))
    loader = importlib.machinery.ExtensionFileLoader("torchrw", path)
    spec = importlib.util.spec_from_file_location("torchrw", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules["torchrw"] = module
    return module


_load()
