"""The torchrw command's run, list and --trace (issue 5)."""
import json
import os
import signal
import subprocess
import textwrap

import pytest

from conftest import BUILD, PLUGINS, PYTHON, read_report, with_ts

TORCHRW = BUILD / "tools" / "torchrw"

EXPORT = """
import torch
class M(torch.nn.Module):
    def forward(self, x):
        y = x.repeat(3)
        return torch.neg(y)
torch.onnx.export(M(), (torch.arange(4.0),), "model.onnx", opset_version=11, **TS)
print("exported")
"""


def torchrw(tmp_path, *args, script=EXPORT):
    (tmp_path / "export.py").write_text(with_ts(script))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHRW_")}
    env.pop("LD_PRELOAD", None)
    return subprocess.run([str(TORCHRW), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_run_preloads_sets_variables_and_summarises(tmp_path):
    p = torchrw(tmp_path, "run", "--backend", "tensorrt", "--plugin", str(PLUGINS / "ops_plugin.so"),
                "--report", "r.json", "--", PYTHON, "export.py")
    assert p.returncode == 0, p.stderr
    assert "exported" in p.stdout
    err = p.stderr
    assert "finished in" in err and "exit status 0 (backend tensorrt)" in err
    assert "fired      builtin:torch.Tensor.repeat@tensorrt x1  (rewriters/repeat.c:" in err
    assert "fired      aten::neg@tensorrt x1" in err
    assert "wrote      model.onnx" in err and "wrote      r.json" not in err
    assert read_report(tmp_path / "r.json")[0]["ir"] == "onnx"


def test_run_exit_status_is_the_commands(tmp_path):
    p = torchrw(tmp_path, "run", "--backend", "ncnn", "--", "sh", "-c", "exit 7")
    assert p.returncode == 7
    assert "exit status 7" in p.stderr and "no trace ran" in p.stderr


def test_run_makes_torchrw_importable_and_reports_not_found(tmp_path):
    (tmp_path / "rw.py").write_text(textwrap.dedent("""
        from torchrw import FUNCTION_REWRITER
        @FUNCTION_REWRITER.register_rewriter("missing.module.func")
        def f(x):
            return x
    """))
    script = "\nimport torchrw" + EXPORT
    p = torchrw(tmp_path, "run", "--backend", "openvino", "--python", "rw.py", "--",
                PYTHON, "export.py", script=script)
    assert p.returncode == 0, p.stderr
    assert "not found  missing.module.func@default" in p.stderr
    assert "no rewriter fired" in p.stderr


def test_run_rejects_unknown_options_and_missing_command(tmp_path):
    p = torchrw(tmp_path, "run", "--bogus")
    assert p.returncode == 2 and "accepted: --backend" in p.stderr
    p = torchrw(tmp_path, "run", "--backend", "tensorrt")
    assert p.returncode == 2 and "no command given" in p.stderr
    p = torchrw(tmp_path, "run", "--help")
    assert p.returncode == 0 and "--trace" in p.stdout


def test_trace_logs_operators_with_shapes_callers_and_rewriters(tmp_path):
    p = torchrw(tmp_path, "run", "--backend", "tensorrt", "--trace=ops.log", "--",
                PYTHON, "export.py")
    assert p.returncode == 0, p.stderr
    log = (tmp_path / "ops.log").read_text().splitlines()
    repeat = [l for l in log if "aten::repeat(" in l][0]
    assert "Float[4], [3]) at " in repeat and "export.py:5" in repeat
    assert repeat.endswith("-> builtin:torch.Tensor.repeat@tensorrt (rewriters/repeat.c:37)") or \
        "-> builtin:torch.Tensor.repeat@tensorrt (rewriters/repeat.c:" in repeat
    neg = [l for l in log if "aten::neg(" in l][0]
    assert "Float[12]) at " in neg and "export.py:6" in neg and "->" not in neg


def test_list_shows_builtins_plugins_python_and_selection(tmp_path):
    (tmp_path / "rw.py").write_text(textwrap.dedent("""
        from torchrw import FUNCTION_REWRITER
        @FUNCTION_REWRITER.register_rewriter("torch.topk", backend="tensorrt")
        def topk(*a, **k):
            return FUNCTION_REWRITER.get_context().origin_func(*a, **k)
    """))
    env_py = str(tmp_path)
    p = subprocess.run([str(TORCHRW), "list", "--backend", "tensorrt", "--json", "--plugin",
                        str(PLUGINS / "ops_plugin.so"), "--python", str(tmp_path / "rw.py")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": env_py})
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    by = {r["stable"]: r for r in doc["rewriters"]}
    assert by["builtin:torch.Tensor.repeat@tensorrt"]["selected"] is True
    assert by["builtin:torch.Tensor.repeat@tensorrt"]["file"] == "rewriters/repeat.c"
    assert by["aten::neg@tensorrt"]["file"].endswith("tests/plugins/ops_plugin.c")
    # The user's rewriter outranks the built-in, which stays listed.
    assert by["torch.topk@tensorrt"]["lang"] == "python"
    assert by["torch.topk@tensorrt"]["selected"] is True and not by["torch.topk@tensorrt"]["builtin"]
    assert by["builtin:torch.topk@tensorrt"]["selected"] is False
    assert by["builtin:torch.layer_norm@default"]["checkers"] == ["below_opset_17"]
    text = subprocess.run([str(TORCHRW), "list", "--backend", "ncnn"], capture_output=True,
                          text=True, timeout=300)
    assert text.returncode == 0
    repeat = [l for l in text.stdout.splitlines() if "torch.Tensor.repeat" in l][0]
    assert not repeat.startswith("*")  # tensorrt's, not selected for ncnn


def test_list_switched_off_and_bad_options(tmp_path):
    p = subprocess.run([str(TORCHRW), "list", "--backend", "tensorrt", "--disable",
                        "builtin:torch.Tensor.repeat@tensorrt"], capture_output=True, text=True, timeout=300)
    line = [l for l in p.stdout.splitlines() if "torch.Tensor.repeat" in l][0]
    assert line.startswith("off")
    p = subprocess.run([str(TORCHRW), "list", "--frobnicate"], capture_output=True, text=True)
    assert p.returncode == 2 and "accepted: --backend" in p.stderr


def test_run_says_plainly_when_the_interpreter_has_no_torch(tmp_path):
    # A venv of the base interpreter, without torch; the export script
    # fails at `import torch`, and torchrw run says why nothing was traced.
    base = subprocess.run([PYTHON, "-c", "import sys; print(sys._base_executable)"],
                          capture_output=True, text=True).stdout.strip()
    subprocess.run([base, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    bare = tmp_path / "bare" / "bin" / "python"
    p = torchrw(tmp_path, "run", "--backend", "tensorrt", "--", str(bare), "export.py")
    assert p.returncode == 1
    assert "no trace ran" in p.stderr
    assert f"{bare} has no torch (import torch fails there)" in p.stderr
    # A script run through its "#!" line is recognised too.
    script = tmp_path / "direct.py"
    script.write_text(f"#!{bare}\nimport torch\n")
    script.chmod(0o755)
    p = torchrw(tmp_path, "run", "--backend", "tensorrt", "--", "./direct.py")
    assert f"{bare} has no torch" in p.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_run_passes_signals_on_and_exits_with_128_plus_the_signal(tmp_path, sig):
    # The command waits forever unless the signal reaches it.
    script = "import sys, time\nprint('READY', flush=True)\ntime.sleep(120)\n"
    (tmp_path / "wait.py").write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHRW_")}
    env.pop("LD_PRELOAD", None)
    # A process group of its own: a signal from the terminal is not what
    # this tests, a signal sent to torchrw alone (kill PID) is.
    # A shell without job control starts background commands with SIGINT
    # ignored, and an ignored signal stays ignored across exec: torchrw's
    # command would never see it.  The default, as a terminal gives it.
    p = subprocess.Popen([str(TORCHRW), "run", "--backend", "tensorrt", "--", PYTHON, "wait.py"],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    try:
        assert p.stdout.readline().strip() == "READY"
        p.send_signal(sig)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 128 + sig, (p.returncode, err)
    assert "exit status %d" % (128 + sig) in err
