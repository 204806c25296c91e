"""Runs one exported zoo model in an engine (bench/zoo.py runs it in its
own process, so an engine that crashes or hangs costs one row):

    PY bench/zoo_engine.py ENGINE MODEL.onnx IO.npz OUT.npz WORKDIR

feeds the inputs saved in IO.npz (in_<name>) and writes the engine's
outputs to OUT.npz (out_<i>, in the graph's output order).  The last line
on stdout is a JSON object; on failure it has "error" (the first line)
and "stage" (where it failed: data/engines.py's EngineError stages).
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
import engines  # noqa: E402


def main():
    engine, onnx_path, io_path, out_path, workdir = sys.argv[1:6]
    io = np.load(io_path)
    feeds = {k[3:]: np.ascontiguousarray(io[k]) for k in io.files if k.startswith("in_")}
    try:
        outs = engines.run(engine, onnx_path, feeds, workdir)
    except Exception as e:  # the engine's failure is the measurement
        print(json.dumps({"error": engines.first_line(e), "stage": getattr(e, "stage", "run")}))
        return 0
    np.savez(out_path, **{f"out_{i}": np.asarray(o) for i, o in enumerate(outs)})
    print(json.dumps({"outputs": len(outs)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
