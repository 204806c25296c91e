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
