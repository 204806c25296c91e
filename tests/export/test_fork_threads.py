"""The shim across fork and threads."""
from conftest import run_script

MODEL = """
import os, sys, threading
import onnx, torch

class M(torch.nn.Module):
    def forward(self, x):
        return x.repeat(4)

def export(path):
    torch.onnx.export(M(), (torch.arange(3.0),), path, **TS)
    return [n.op_type for n in onnx.load(path).graph.node]

def rewritten(ops):
    return "Unsqueeze" in ops and "Squeeze" in ops
"""


def test_fork_child_and_parent_both_rewrite(tmp_path):
    code = MODEL + """
print("parent before", rewritten(export("p0.onnx")))
pid = os.fork()
if pid == 0:
    ok = rewritten(export("child.onnx"))
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print("child status", os.waitstatus_to_exitcode(status))
print("parent after", rewritten(export("p1.onnx")))
"""
    run = run_script(tmp_path, code, backend="tensorrt").check()
    assert "parent before True" in run.stdout
    assert "child status 0" in run.stdout
    assert "parent after True" in run.stdout


def test_fork_before_first_trace(tmp_path):
    code = MODEL + """
pid = os.fork()
if pid == 0:
    os._exit(0 if rewritten(export("child.onnx")) else 3)
_, status = os.waitpid(pid, 0)
print("child status", os.waitstatus_to_exitcode(status))
print("parent", rewritten(export("p.onnx")))
"""
    run = run_script(tmp_path, code, backend="tensorrt").check()
    assert "child status 0" in run.stdout and "parent True" in run.stdout


def test_traces_in_threads_while_main_thread_computes(tmp_path):
    # torch.onnx.export itself is not thread-safe (its GLOBALS assert), so
    # the threads use torch.jit.trace.
    code = MODEL + """
results = {}
def worker(i):
    graph = str(torch.jit.trace(M(), (torch.arange(3.0),)).graph)
    results[i] = "aten::unsqueeze" in graph and "aten::squeeze" in graph
threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
# Eager work on the main thread meanwhile: never rewritten, always right.
x = torch.arange(3.0)
for _ in range(2000):
    assert torch.equal(x.repeat(2), torch.cat([x, x]))
for t in threads:
    t.join()
print("threads", sorted(results.items()))
"""
    run = run_script(tmp_path, code, backend="tensorrt").check()
    assert "threads [(0, True), (1, True), (2, True), (3, True)]" in run.stdout


SLOW_REWRITERS = """
import os, time
from torchrw import FUNCTION_REWRITER
# A module that takes a while to import, as real ones do; the first time
# (while INTERRUPT_ONCE names a file that does not exist yet) it is interrupted.
if os.environ.get("INTERRUPT_ONCE") and not os.path.exists(os.environ["INTERRUPT_ONCE"]):
    open(os.environ["INTERRUPT_ONCE"], "w").close()
    raise KeyboardInterrupt
time.sleep(0.5)

@FUNCTION_REWRITER.register_rewriter("torch.nn.functional.relu", backend="tensorrt")
def relu_as_clamp(x, inplace=False):
    return x.clamp(min=0)
"""

RELU = """
import io, sys, threading
import onnx, torch

class R(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.relu(x)

def traced():
    return "aten::clamp" in str(torch.jit.trace(R(), (torch.ones(2),)).graph)

def exported():
    buf = io.BytesIO()
    torch.onnx.export(R(), (torch.ones(2),), buf, opset_version=11, **TS)
    return [n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node]
"""


def test_first_traces_on_several_threads_load_the_modules_once(tmp_path):
    (tmp_path / "slow_rewriters.py").write_text(SLOW_REWRITERS)
    code = RELU + """
start = threading.Barrier(4)
results = {}
def worker(i):
    start.wait()
    results[i] = traced()
threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("threads", sorted(results.items()))
print("later", exported())
"""
    run = run_script(tmp_path, code, backend="tensorrt", TORCHRW_PYTHON="slow_rewriters.py",
                     PYTHONPATH=tmp_path).check()
    assert "threads [(0, True), (1, True), (2, True), (3, True)]" in run.stdout, run.stderr
    later = [l for l in run.stdout.splitlines() if l.startswith("later")][0]
    assert "Relu" not in later and ("Clip" in later or "Max" in later), run.stdout
    assert "registered while an export" not in run.stderr


def test_ctrl_c_while_the_modules_import_is_that_exports_only(tmp_path):
    (tmp_path / "slow_rewriters.py").write_text(SLOW_REWRITERS)
    code = RELU + """
try:
    exported()
    print("first", "no interrupt")
except KeyboardInterrupt:
    print("first", "KeyboardInterrupt")
print("second", exported())
print("third", exported())
"""
    run = run_script(tmp_path, code, backend="tensorrt", TORCHRW_PYTHON="slow_rewriters.py",
                     PYTHONPATH=tmp_path, INTERRUPT_ONCE=tmp_path / "interrupted").check()
    assert "first KeyboardInterrupt" in run.stdout, run.stderr
    second = [l for l in run.stdout.splitlines() if l.startswith("second")][0]
    assert "Relu" not in second and ("Clip" in second or "Max" in second), run.stdout
    assert "third" in run.stdout
    # The module imported again registers the same sites again: no warning.
    assert "torchrw: warning" not in run.stderr and "torchrw: error" not in run.stderr
