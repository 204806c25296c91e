"""One export of the zoo (bench/zoo.py runs it in its own process, with or
without torchrw preloaded):

    PY bench/zoo_export.py MODEL EXPORTER OPSET OUTDIR

builds MODEL (bench/zoo_models.py) and prepares it (re-initialised where
its outputs do not depend on its input; ultralytics' then fused), runs it in PyTorch, then exports it
with torch.onnx.export (EXPORTER: torchscript, or torch.export on torch
2.9+) at OPSET to OUTDIR/model.onnx.  OUTDIR/io.npz gets the inputs
(in_<name>) and PyTorch's outputs, flattened as the exporters flatten
them (out_<i>); the last line on stdout is a JSON object: output names,
whether PyTorch's outputs depend on the input and what was re-initialised
to make them (zoo_models.prepare: "degenerate", "reinit"), and the
export's error (its first line) if it failed.
"""
import inspect
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zoo_models import MODELS, build, finish, flatten, prepare  # noqa: E402


def first_line(exc):
    text = f"{type(exc).__name__}: {exc}".strip()
    lines = [l for l in text.splitlines() if l.strip()]
    return lines[0][:400] if lines else type(exc).__name__


def main():
    name, exporter, opset, outdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    import numpy as np
    import torch

    torch.set_num_threads(1)
    result = {"torch": torch.__version__}
    try:
        model, args, inputs = build(name)
    except AttributeError as e:
        import torchvision
        result["error"] = f"not in torchvision {torchvision.__version__}: {e}"
        result["unavailable"] = True
        print(json.dumps(result))
        return 0
    family, _, _, (kind, shape) = MODELS[name]
    result.update(prepare(model, args, family, kind, shape))
    model = finish(name, model)
    with torch.no_grad():
        ref = flatten(model(*args))
    result["outputs"] = [n for n, _ in ref]
    np.savez(os.path.join(outdir, "io.npz"),
             **{f"in_{k}": v.numpy() for k, v in inputs.items()},
             **{f"out_{i}": t.detach().numpy() for i, (_, t) in enumerate(ref)})
    kw = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kw["dynamo"] = exporter == "torch.export"
    elif exporter != "torchscript":
        result["error"] = f"torch {torch.__version__} has no torch.export exporter"
        print(json.dumps(result))
        return 0
    t = time.perf_counter()
    try:
        torch.onnx.export(model, args, os.path.join(outdir, "model.onnx"),
                          opset_version=opset, input_names=list(inputs),
                          **kw)
    except Exception as e:  # the export's failure is the measurement
        traceback.print_exc()
        result["error"] = first_line(e)
    result["export_seconds"] = round(time.perf_counter() - t, 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
