"""torchvision detection models exported under the preloaded library with
every built-in rewriter active (issue 4): the files run in ONNX Runtime and
give PyTorch's boxes, scores and labels.

weights=None keeps the tests offline; the parameters of the mobilenet
models are perturbed with a fixed seed so that scores differ between
anchors (with torchvision's own initialisation they tie, and the order of
tied detections is arbitrary).
"""
import subprocess

import numpy as np
import pytest

from conftest import BUILD, EXPORTER, ort_run, run_script, torchscript_only

EXPORT = """
import json, numpy as np, torch, torchvision
name = NAME
kw = {"retinanet_resnet50_fpn": dict(score_thresh=0.0, detections_per_img=50),
      "ssdlite320_mobilenet_v3_large": dict(score_thresh=0.0, detections_per_img=50),
      "fasterrcnn_mobilenet_v3_large_320_fpn": dict(box_score_thresh=0.0,
                                                    box_detections_per_img=50)}[name]
torch.manual_seed(0)
model = getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None, **kw)
model.eval()
# retinanet's own initialisation already gives distinct scores (and noise
# saturates its sigmoids); the others need it.
noise = 0.0 if name == "retinanet_resnet50_fpn" else 0.05
with torch.no_grad():
    for p in model.parameters():
        p.add_(torch.randn_like(p) * noise)
torch.manual_seed(1)
image = torch.rand(3, 320, 320)
torch.onnx.export(model, ([image],), "model.onnx", opset_version=11, input_names=["image"], **TS)
with torch.no_grad():
    out = model([image])[0]
np.savez("io.npz", image=image.numpy(), **{k: v.numpy() for k, v in out.items()})
print("KEYS", json.dumps(list(out.keys())))
"""

MODELS = ["retinanet_resnet50_fpn", "ssdlite320_mobilenet_v3_large",
          "fasterrcnn_mobilenet_v3_large_320_fpn"]


def canonical(boxes, scores, labels, floor):
    """Detections scoring above floor whose score no other detection of the
    same label shares, in a canonical order.  Detections of one label whose
    scores tie exactly (a pattern the random weights repeat along a border)
    are kept or suppressed by NMS in the order the runtime met them, which
    differs between the two runtimes and between CPUs: they are left out."""
    keep = scores > floor
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    rounded = np.round(scores, 6)
    pairs = list(zip(rounded.tolist(), labels.tolist()))
    unique = np.array([pairs.count(p) == 1 for p in pairs], dtype=bool)
    boxes, scores, labels = boxes[unique], scores[unique], labels[unique]
    rows = np.concatenate([-np.round(scores[:, None], 4), labels[:, None],
                           np.round(boxes, 1)], axis=1)
    order = np.lexsort(rows.T[::-1])
    return boxes[order], scores[order], labels[order]


# TensorRT 8.5 is the version whose parser needs a constant TopK K (8.6 and
# 10.x take a computed one, as ONNX Runtime does).
@pytest.mark.parametrize("backend", ["tensorrt:8.5", "onnxruntime"])
@pytest.mark.parametrize("name", MODELS)
def test_detection_model_matches_pytorch_in_onnxruntime(tmp_path, name, backend):
    if EXPORTER == "torch.export":
        _pin_torch_export_failure(tmp_path, name, backend)
        return
    run = run_script(tmp_path, EXPORT.replace("NAME", repr(name)), backend=backend,
                     TORCHRW_REPORT=tmp_path / "report.json").check()
    keys = [l for l in run.stdout.splitlines() if l.startswith("KEYS")][0]
    order = __import__("json").loads(keys[5:])
    io = np.load(run.path("io.npz"))
    outs = dict(zip(order, ort_run(run.path("model.onnx"), {"image": io["image"]})))
    ref = {k: io[k] for k in order}
    assert len(ref["scores"]) == 50
    # The 50th score may be shared by detections that did not make the cut:
    # compare those strictly above it.
    floor = ref["scores"].min() + 1e-6
    got = canonical(outs["boxes"], outs["scores"], outs["labels"], floor)
    want = canonical(ref["boxes"], ref["scores"], ref["labels"], floor)
    assert len(want[0]) >= 10
    assert len(got[0]) == len(want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got[2], want[2])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-3, atol=0.05)
    # The graph against the backend's capability table (data/backends).
    check = subprocess.run([str(BUILD / "tools" / "torchrw"), "check", str(run.path("model.onnx")),
                            "--backend", backend], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    if backend == "tensorrt:8.5":
        assert "Mod" not in run.ops()


def _pin_torch_export_failure(tmp_path, name, backend):
    """torch.export (torch 2.14.1) cannot capture torchvision's detection
    models: their post-processing branches on the number of boxes that
    survive a threshold, a size known only at run time.  It fails the same
    with and without torchrw; one backend and one model (the smallest) are
    enough to pin that."""
    if backend != "tensorrt:8.5" or name != "fasterrcnn_mobilenet_v3_large_320_fpn":
        pytest.skip("torch.export cannot capture the detection models: pinned once, on "
                    "fasterrcnn_mobilenet_v3_large_320_fpn under tensorrt:8.5")
    code = EXPORT.replace("NAME", repr(name))
    run = run_script(tmp_path, code, backend=backend)
    (tmp_path / "plain").mkdir()
    plain = run_script(tmp_path / "plain", code, preload=False)
    for r in (run, plain):
        assert r.returncode != 0
        assert "GuardOnDataDependentSymNode: Could not guard on data-dependent" in r.stderr


@torchscript_only("needs the model exported without torchrw, which torch.export cannot "
                  "capture (test_detection_model_matches_pytorch_in_onnxruntime pins that)")
def test_without_torchrw_tensorrt_cannot_take_the_graph(tmp_path):
    # The same export without the library: TensorRT 8.5's table rejects its
    # run-time TopK K, which the tensorrt:<8.6 rewriters make constant.
    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    run = run_script(tmp_path, EXPORT.replace("NAME", repr(name)), preload=False).check()
    check = subprocess.run([str(BUILD / "tools" / "torchrw"), "check", str(run.path("model.onnx")),
                            "--backend", "tensorrt:8.5"], capture_output=True, text=True)
    assert check.returncode == 1
    assert "TopK: input 1" in check.stdout and "must be a constant" in check.stdout
