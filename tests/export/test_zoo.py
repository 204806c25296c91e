"""A few models of the model zoo (bench/zoo.py) through the zoo's own code,
so that it cannot rot between its runs outside CI: each is exported with
and without torchrw by the interpreter under test, checked with
`torchrw check`, run in the backend's engine (data/engines.py) and
compared with PyTorch; torchrw must do no worse than plain torch.
"""
import json
import sys

import pytest

from conftest import BUILD, EXPORTER, PYTHON, ROOT, TORCH_SERIES, skip_without

sys.path[:0] = [str(ROOT / "data"), str(ROOT / "bench")]
import engines  # noqa: E402
import zoo  # noqa: E402

# model: backend.  ncnn's rows go through pnnx and ncnn; tensorrt's files
# run in ONNX Runtime.
CASES = {"squeezenet1_1": "ncnn", "mobilenet_v3_small": "tensorrt:8.5",
         "lraspp_mobilenet_v3_large": "tensorrt:8.5"}


@pytest.fixture
def zoo_for_python(monkeypatch):
    """bench/zoo.py with the interpreter under test as its torch, and the
    test's interpreter (the venv's) running the engines."""
    if (TORCH_SERIES, EXPORTER) != ("2.14", "torchscript"):
        pytest.skip("the zoo's code is the same on every leg: CI runs it once, on torch 2.14's "
                    "TorchScript exporter, to stay within its time")
    if TORCH_SERIES not in zoo.PYTHONS:
        pytest.skip(f"the zoo knows torch {', '.join(zoo.PYTHONS)}, not {TORCH_SERIES}")
    monkeypatch.setitem(zoo.PYTHONS, TORCH_SERIES, PYTHON)
    monkeypatch.setattr(zoo, "ENGINE_PYTHON", sys.executable)
    return zoo


def test_zoo_models_export_and_match_pytorch_with_and_without_torchrw(tmp_path, zoo_for_python,
                                                                      capsys):
    for engine in {zoo.PROFILES[b][1] for b in CASES.values()}:
        if engines.missing(engine):
            pytest.skip(engines.missing(engine))
    results = tmp_path / "zoo.jsonl"
    common = ["--results", str(results), "--torch", TORCH_SERIES, "--exporter", EXPORTER,
              "--build", str(BUILD), "--workdir", str(tmp_path / "work"), "--timeout", "600"]
    for model, backend in CASES.items():
        assert zoo.main(["--models", model, "--backends", backend] + common) == 0
    rows = [json.loads(l) for l in results.read_text().splitlines()]
    assert len(rows) == 2 * len(CASES)
    for row in rows:
        what = f"{row['model']} {row['mode']} {row['backend']}"
        assert row["exported"], f"{what}: {row['error']}"
        assert isinstance(row["check"]["violations"], int), what
        num = row["numerics"]
        assert num["engine"] == zoo.PROFILES[row["backend"]][1]
        assert num["ok"] and num["vs"] == "pytorch", f"{what}: {num}"
        assert num["max_rel"] <= zoo.RTOL
    # torchrw fired something for ncnn (its size rewriter), and recorded it.
    ncnn = [r for r in rows if r["mode"] == "torchrw" and r["backend"] == "ncnn"]
    assert all(r["fired"] for r in ncnn)
    assert zoo.regressions(zoo.Results(results)) == []

    # Recorded rows are not redone: nothing is exported the second time.
    capsys.readouterr()
    before = results.read_text()
    for model, backend in CASES.items():
        assert zoo.main(["--models", model, "--backends", backend] + common) == 0
    assert "export" not in capsys.readouterr().out
    assert results.read_text() == before

    zoo.main(["--table", "--results", str(results)])
    table = capsys.readouterr().out
    group = f"| {TORCH_SERIES} | {EXPORTER} | tensorrt:8.5 (11, onnxruntime) | 2 | 2 / 2 | "
    assert group in table, table
    assert "| squeezenet1_1 | 1x3x64x64 | check" in table


# One hub model (bench/zoo_hub.py), so that building from a config offline,
# token ids and an attention mask as int64 inputs, and their way through
# the export and the engine cannot rot: transformers' DistilBERT, 2 layers,
# under ONNX Runtime's profile (opset 17, where plain torch exports
# scaled_dot_product_attention too).
HUB_CASE = ("hf_distilbert", "onnxruntime")


def test_a_hub_model_with_token_ids_and_a_mask_exports_and_matches_pytorch(tmp_path,
                                                                           zoo_for_python):
    model, backend = HUB_CASE
    skip_without("transformers")
    if engines.missing(zoo.PROFILES[backend][1]):
        pytest.skip(engines.missing(zoo.PROFILES[backend][1]))
    results = tmp_path / "zoo.jsonl"
    assert zoo.main(["--results", str(results), "--torch", TORCH_SERIES, "--exporter", EXPORTER,
                     "--build", str(BUILD), "--workdir", str(tmp_path / "work"),
                     "--timeout", "600", "--models", model, "--backends", backend]) == 0
    rows = [json.loads(l) for l in results.read_text().splitlines()]
    assert sorted(r["mode"] for r in rows) == ["plain", "torchrw"]
    for row in rows:
        what = f"{row['model']} {row['mode']} {backend}"
        assert row["input"] == "1x16 ids+mask", what
        assert row["exported"], f"{what}: {row['error']}"
        assert row["degenerate"] is False, what
        assert row["numerics"]["ok"] and row["numerics"]["vs"] == "pytorch", \
            f"{what}: {row['numerics']}"
        assert row["onnx_export_seconds"] is not None, what
    assert zoo.regressions(zoo.Results(results)) == []


def test_hub_models_are_skipped_on_torch_1_13_with_the_reason(tmp_path, capsys):
    results = tmp_path / "zoo.jsonl"
    assert zoo.main(["--results", str(results), "--torch", "1.13", "--models", "hf_bert,yolov8n",
                     "--workdir", str(tmp_path / "work")]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped: timm, transformers and ultralytics are installed beside "
                     "torch 2.14 only") == 2, out
    assert not results.exists()


def test_torchrw_is_judged_by_plain_torch_where_plain_already_differs():
    names = ["0.boxes", "0.labels", "0.scores"]
    boxes = [[0.0, 0, 1, 1], [1, 1, 2, 2]]
    # The same detections in another order match once put in one order.
    want = [zoo.np.array(boxes), zoo.np.array([1, 2]), zoo.np.array([0.9, 0.8])]
    got = [zoo.np.array(boxes[::-1]), zoo.np.array([2, 1]), zoo.np.array([0.8, 0.9])]
    assert zoo.compare(names, want, got, "detection")["ok"]
    assert not zoo.compare(names, want, got, "classification")["ok"]
    shorter = [a[:1] for a in got]
    assert "shape" in zoo.compare(names, want, shorter, "detection")["why"]
    plain = {"mode": "plain", "exported": True, "check": {"violations": 2, "rules": []},
             "numerics": {"ok": False, "vs": "pytorch"}}
    rw = {"mode": "torchrw", "exported": True, "check": {"violations": 2, "rules": []},
          "numerics": {"ok": True, "vs": "plain"}}
    assert zoo.worse(rw, plain) is None
    assert zoo.worse({**rw, "exported": False, "error": "E"}, plain) == "export fails: E"
    assert zoo.worse({**rw, "check": {"violations": 3, "rules": ["Tile: x"]}},
                     plain).startswith("check 3 violations, plain 2")
    # Plain torch's file missed the opset asked for; torchrw's has it.
    assert zoo.worse({**rw, "opset": 11, "opset_file": 11,
                      "check": {"violations": 3, "rules": ["Gather: x"]}},
                     {**plain, "opset": 11, "opset_file": 18}) is None
    assert zoo.worse({**rw, "opset": 11, "opset_file": 11,
                      "check": {"violations": 3, "rules": ["Gather: x"]}},
                     {**plain, "opset": 11, "opset_file": 11}).startswith("check 3")
    good = {**plain, "numerics": {"ok": True, "vs": "pytorch"}}
    assert zoo.worse({**rw, "numerics": {"ok": False, "why": "max error 1"}},
                     good) == "numerics: max error 1"


def test_a_model_whose_outputs_do_not_depend_on_its_input_is_reinitialised():
    import torch
    import zoo_models

    def tiny(zero_head):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                    torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                    torch.nn.Flatten(), torch.nn.Linear(4, 5)).eval()
        if zero_head:  # as vit_b_16's head
            torch.nn.init.zeros_(model[5].weight)
            torch.nn.init.zeros_(model[5].bias)
        return model

    shape = (1, 3, 8, 8)
    x = (torch.rand(*shape),)
    fine = tiny(False)
    before = [p.clone() for p in fine.state_dict().values()]
    assert zoo_models.prepare(fine, x, "classification", "image", shape) == {
        "degenerate": False, "reinit": []}
    assert all(torch.equal(a, b) for a, b in zip(before, fine.state_dict().values()))

    zero = tiny(True)
    prep = zoo_models.prepare(zero, x, "classification", "image", shape)
    assert prep == {"degenerate": False, "reinit": ["zero weights redrawn: 5"]}
    assert zero[5].weight.abs().min() > 0 and not zero[5].bias.any()
    assert zero[1].running_var.eq(1).all()  # the first step was enough

    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.BatchNorm2d(3)

        def forward(self, x):
            return self.norm(x).sum() * 0

    const = Constant().eval()
    prep = zoo_models.prepare(const, x, "classification", "image", shape)
    assert prep == {"degenerate": True,
                    "reinit": ["BatchNorm statistics of a seeded batch: 1 layer"]}
    assert not const.norm.training and const.norm.momentum == 0.1


def test_degenerate_rows_are_marked_and_their_numerics_not_counted(tmp_path, capsys):
    base = {"model": "vit_b_16", "family": "classification", "input": "1x3x64x64",
            "backend": "ncnn", "opset": 11, "torch": "2.14", "exporter": "torchscript",
            "exported": True, "check": {"violations": 0, "rules": []},
            "numerics": {"ok": True, "vs": "pytorch", "engine": "ncnn", "max_rel": 0.0},
            "degenerate": True, "date": "2026-01-01"}
    results = tmp_path / "zoo.jsonl"
    results.write_text("".join(json.dumps({**base, "mode": m}) + "\n"
                               for m in ("plain", "torchrw")))
    assert zoo.verdicts({**base, "mode": "plain"}) == (True, True, None)
    zoo.main(["--table", "--results", str(results)])
    table = capsys.readouterr().out
    assert "| 2.14 | torchscript | ncnn (11, ncnn) | 1 | 1 / 1 | 1 / 1 | 0 / 0 | 0 |" in table
    assert "| vit_b_16 **(degenerate)** |" in table


def test_the_table_says_what_torchrw_changed_and_where_plain_needed_nothing():
    fired = {"builtin:aten::slice@tensorrt": 5, "builtin:torch.layer_norm@tensorrt:<8.6": 1,
             "mypkg.rewriters.head@ncnn": 2}
    assert zoo.changed({"fired": fired}) == "slice x5, layer_norm<8.6, mypkg.rewriters.head x2"
    assert zoo.changed({"fired": {}}) == zoo.changed(None) == "-"
    ok = {"exported": True, "check": {"violations": 0, "rules": []},
          "numerics": {"ok": True}, "opset": 11, "opset_file": 11}
    rw = {**ok, "fired": {"builtin:aten::slice@tensorrt": 1}}
    assert zoo.needless({"torchrw": rw, "plain": ok})
    assert not zoo.needless({"torchrw": {**rw, "fired": {}}, "plain": ok})
    assert not zoo.needless({"torchrw": rw, "plain": {**ok, "check": {"violations": 1,
                                                                      "rules": ["x"]}}})
    # Plain torch kept opset 18 where 11 was asked: torchrw's change was needed.
    assert not zoo.needless({"torchrw": rw, "plain": {**ok, "opset_file": 18}})
