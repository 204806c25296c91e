"""The `torchrw` command of a pip-installed torchrw.

The command is a C program inside the torchrw package (torchrw/bin/torchrw,
beside torchrw/lib); this entry point runs it with PYTHON set to this
interpreter, so that `torchrw list` asks the torch of this environment.
It does not import torchrw (or torch): `torchrw inspect` stays fast.
"""
import os
import sys


def main():
    exe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torchrw", "bin", "torchrw")
    if not os.access(exe, os.X_OK):
        sys.exit("torchrw: %s is missing; reinstall torchrw" % exe)
    os.environ.setdefault("PYTHON", sys.executable)
    os.execv(exe, [exe] + sys.argv[1:])


if __name__ == "__main__":
    main()
