"""The torch a torchrw wheel is built for, in the wheel's metadata.

A dynamic-metadata provider for scikit-build-core (pyproject.toml): the
version gets the torch series as a local label (0.1.0+torch2.14) and the
wheel requires that series of torch.  pip builds with --no-build-isolation,
so the torch imported here is the one the runtime is built against.
"""
import re

VERSION = "0.1.0"


def dynamic_metadata(settings, project):
    try:
        import torch
    except ImportError as e:
        raise RuntimeError(
            "torchrw builds against the torch of the interpreter that builds it: "
            "install torch first, then pip install --no-build-isolation "
            "(cannot import torch: %s)" % e) from e
    m = re.match(r"(\d+)\.(\d+)", torch.__version__)
    if not m:
        raise RuntimeError("torch.__version__ is %r" % torch.__version__)
    major, minor = int(m.group(1)), int(m.group(2))
    return {
        "version": "%s+torch%d.%d" % (VERSION, major, minor),
        "dependencies": ["torch>=%d.%d,<%d.%d" % (major, minor, major, minor + 1)],
    }
