"""TORCHRW_SAMPLE=1: each torch.onnx.export to a path F also writes
F's sample, F without .onnx + .sample.npz: the export's example inputs
(in_0, in_1, ...) and PyTorch's outputs on them (out_0, ...), each
flattened in the order the exporters flatten them (tuples, lists and dict
values, recursively; None and non-tensors left out).  `torchrw explain`
runs both of its files on those inputs in the backend's engine and holds
the outputs against PyTorch's.

The model runs once more, before the export and outside it (no rewriter
is on): under no_grad, in eval mode when the exporter would put it there
(the TorchScript exporter's training=EVAL, its default), with torch's
random state restored afterwards, so the user's model and the rest of the
script see nothing.  A model left in training mode for torch.export is
not run (its batch norms would update their statistics).  Whatever goes
wrong is one line on stderr; the export goes on.
"""
import inspect
import os
import sys


def _flatten(value, out):
    import torch

    if isinstance(value, torch.Tensor):
        out.append(value)
    elif isinstance(value, (tuple, list)):
        for v in value:
            _flatten(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _flatten(v, out)
    return out


def _sample_path(f):
    path = os.fspath(f)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    stem = path[:-5] if path.endswith(".onnx") else path
    return stem + ".sample.npz"


def _modes(model):
    import torch

    if isinstance(model, torch.nn.Module):
        return [(m, m.training) for m in model.modules()]
    return []


def save(export, args, kwargs, through_torch_export):
    """Writes the sample of the torch.onnx.export call export(*args,
    **kwargs); through_torch_export says which exporter it goes to."""
    try:
        bound = inspect.signature(export).bind_partial(*args, **kwargs)
    except TypeError:
        return  # torch.onnx.export raises its own error for this call
    call = bound.arguments
    f = call.get("f")
    if f is None or not isinstance(f, (str, bytes, os.PathLike)):
        return  # a file object: no path to write beside
    try:
        _save(call, _sample_path(f), through_torch_export)
    except Exception as e:  # noqa: BLE001 - the export must go on
        sys.stderr.write("torchrw: TORCHRW_SAMPLE: no sample of %s: %s: %s\n"
                         % (os.fsdecode(os.fspath(f)), type(e).__name__, e))


def _save(call, path, through_torch_export):
    import numpy as np
    import torch

    model = call.get("model")
    program = getattr(sys.modules.get("torch.export"), "ExportedProgram", None)
    if program is not None and isinstance(model, program):
        model = model.module()
    example = call.get("args", ())
    if not isinstance(example, tuple):
        example = (example,)
    kw = dict(call.get("kwargs") or {})
    if not through_torch_export and example and isinstance(example[-1], dict):
        # The TorchScript exporter's convention: a last dict holds keywords.
        kw, example = dict(example[-1]), example[:-1]
    modes = _modes(model)
    training = call.get("training")
    to_eval = not through_torch_export and (training is None or
                                            getattr(training, "name", "") == "EVAL")
    if not to_eval and any(t for _, t in modes):
        raise RuntimeError("the model is in training mode, and running it would "
                           "update what its batch norms keep")
    rng = torch.get_rng_state()
    try:
        if to_eval:
            for m, _ in modes:
                m.training = False
        with torch.no_grad():
            outputs = model(*example, **kw)
    finally:
        for m, t in modes:
            m.training = t
        torch.set_rng_state(rng)
    inputs = _flatten(list(example) + list(kw.values()), [])
    arrays = {"in_%d" % i: t.detach().cpu().numpy() for i, t in enumerate(inputs)}
    arrays.update({"out_%d" % i: t.detach().cpu().numpy()
                   for i, t in enumerate(_flatten(outputs, []))})
    tmp = path + ".part"
    with open(tmp, "wb") as out:
        np.savez(out, **arrays)
    os.replace(tmp, path)
