"""The shim across fork and threads."""
from conftest import EXPORTER, run_script, torchscript_only

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
    # the threads use torch.jit.trace.  They start together and trace
    # several times each: a thread beginning its trace must not change what
    # runs in another's (the choice of rewriters is per thread).  Eager work
    # on the main thread meanwhile is never rewritten.
    code = MODEL + """
class Many(torch.nn.Module):
    def forward(self, x):
        for _ in range(8):
            x = x.repeat(2)[:3]
        return x

start = threading.Barrier(4)
results = {}
def worker(i):
    start.wait()
    try:
        counts = []
        for _ in range(6):
            graph = str(torch.jit.trace(Many(), (torch.arange(3.0),), check_trace=False).graph)
            counts.append((graph.count("aten::unsqueeze"), graph.count("aten::repeat")))
        results[i] = counts == [(8, 8)] * 6 or counts
    except Exception as e:
        results[i] = repr(e)
threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
for t in threads:
    t.start()
x = torch.arange(3.0)
for _ in range(2000):
    assert torch.equal(x.repeat(2), torch.cat([x, x]))
for t in threads:
    t.join()
print("threads", sorted(results.items()))
"""
    run = run_script(tmp_path, code, backend="tensorrt").check()
    assert "threads [(0, True), (1, True), (2, True), (3, True)]" in run.stdout, run.stderr


@torchscript_only("operator rewriters run during torch.export's lowering, not while the "
                  "model's forward runs, so a forward held midway holds no operator kernel")
def test_each_thread_traces_with_its_own_exports_rewriters(tmp_path):
    # Thread a exports at opset 11 and is held in forward, before its einsum;
    # thread b traces for TorchScript meanwhile.  The einsum rewriter applies
    # to ONNX exports below opset 12 only: b's activation must not turn it
    # off for a, nor a's turn it on for b.
    code = MODEL + """
class Held(torch.nn.Module):
    def __init__(self, hold):
        super().__init__()
        self.hold = hold
    def forward(self, x):
        self.hold()
        return torch.einsum("ij,jk->ik", x, x)

started, finish = threading.Barrier(2), threading.Barrier(2)
def hold():
    started.wait()
    finish.wait()
result = {}
def export_a():
    try:
        torch.onnx.export(Held(hold), (torch.ones(3, 3),), "a.onnx", opset_version=11, **TS)
        result["a"] = sorted({n.op_type for n in onnx.load("a.onnx").graph.node})
    except Exception as e:
        result["a"] = repr(e)[:300]
a = threading.Thread(target=export_a)
a.start()
started.wait()
graph = str(torch.jit.trace(Held(lambda: None), (torch.ones(3, 3),)).graph)
print("b einsum kept", "aten::einsum" in graph)
finish.wait()
a.join()
print("a ops", result["a"])
"""
    run = run_script(tmp_path, code, backend="tensorrt").check()
    assert "b einsum kept True" in run.stdout, run.stdout + run.stderr
    a_ops = [l for l in run.stdout.splitlines() if l.startswith("a ops")][0]
    assert "MatMul" in a_ops and "Einsum" not in a_ops, run.stdout + run.stderr


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


# Python patches belong to the tracing thread.  victims.py holds the
# targets; user_code.py calls them the ways user code does (an alias from
# `from victims import scale`, a module attribute, a torch builtin).
VICTIMS = """
import torch

def scale(x, factor: float = 2.0):
    return x * factor

class Block(torch.nn.Module):
    def forward(self, x):
        return x + 1
"""

USER_CODE = """
import torch
import torch.nn.functional as F
import victims
from victims import scale
from torch import topk

# Fresh function objects each time: TorchScript caches by function.
def make_scripted():
    def uses_alias(x):
        return scale(x, 3.0)
    def uses_module_attr(x):
        return victims.scale(x) + F.relu(x)
    def uses_builtin(x):
        return torch.topk(x, 1)[0]
    def uses_builtin_alias(x):
        return topk(x, 1)[0]
    return uses_alias, uses_module_attr, uses_builtin, uses_builtin_alias
"""

PATCHES = """
import torch
from torchrw import FUNCTION_REWRITER, MODULE_REWRITER

@FUNCTION_REWRITER.register_rewriter("victims.scale", backend="tensorrt")
def scale_rw(x, factor=2.0):
    return x * 100.0

@FUNCTION_REWRITER.register_rewriter("torch.nn.functional.relu", backend="tensorrt")
def relu_rw(x, inplace=False):
    return x.clamp(min=0)

@FUNCTION_REWRITER.register_rewriter("torch.topk", backend="tensorrt")
def topk_rw(x, k, *args, **kwargs):
    return FUNCTION_REWRITER.get_context().origin_func(x, k, *args, **kwargs)

@FUNCTION_REWRITER.register_rewriter("torch.Tensor.flip", backend="tensorrt")
def flip_rw(x, *dims):
    return FUNCTION_REWRITER.get_context().origin_func(x, *dims)

@MODULE_REWRITER.register_rewrite_module("victims.Block", backend="tensorrt")
class BlockRw(torch.nn.Module):
    def __init__(self, module, cfg):
        super().__init__()
    def forward(self, x):
        return x - 1
"""

# probe() describes what the targets look like from the calling thread:
# signatures, pickles (of what the module holds now and of the originals
# taken before any export), TorchScript, calls and types.  Without patches
# (before the export) and on a thread that does not trace, it must say the
# same.
PROBE = """
import inspect, io, os, pickle, sys, threading, traceback
import onnx, torch
import torch.nn.functional as F
import victims, user_code
TORCH_OWN_HERE

ORIG = {"scale": victims.scale, "relu": F.relu, "topk": torch.topk,
        "flip": torch.Tensor.flip, "forward": victims.Block.forward, "Block": victims.Block}

def attempt(f):
    try:
        return ("ok", f())
    except Exception as e:
        return ("error", type(e).__name__, str(e).splitlines()[0][:200])

def probe():
    x = torch.tensor([3.0, -1.0, 2.0])
    now = {"scale": victims.scale, "relu": F.relu, "topk": torch.topk,
           "flip": torch.Tensor.flip, "forward": victims.Block.forward,
           "bound": victims.Block().forward}
    out = {}
    for name, obj in now.items():
        out["sig " + name] = attempt(lambda: str(inspect.signature(obj)))
        out["pickle " + name] = attempt(lambda: pickle.dumps(obj))
        out["type " + name] = (type(obj).__name__, inspect.isfunction(obj), inspect.ismethod(obj),
                               inspect.isbuiltin(obj), getattr(obj, "__qualname__", None))
        out["same " + name] = obj is ORIG.get(name, obj)
    for name, obj in ORIG.items():
        out["pickle orig " + name] = attempt(lambda: pickle.dumps(obj))
        out["sig orig " + name] = attempt(lambda: str(inspect.signature(obj)))
    for fn in user_code.make_scripted():
        out["script " + fn.__name__] = attempt(lambda: torch.jit.script(fn)(x).tolist())
    # What user_code's globals hold (a patch, while one is applied) pickles
    # as the original.
    for name in ("scale", "topk"):
        obj = vars(user_code)[name]
        out["roundtrip alias " + name] = attempt(lambda: pickle.loads(pickle.dumps(obj)) is ORIG[name])
    out["call scale"] = victims.scale(x).tolist()
    out["call relu"] = F.relu(x).tolist()
    out["call Block"] = victims.Block()(x).tolist()
    out["call flip"] = x.flip(0).tolist()
    out["script Block"] = attempt(lambda: torch.jit.script(victims.Block())(x).tolist())
    return out

def diff(a, b):
    return {k: (a[k], b.get(k)) for k in a if k not in TORCH_OWN and a[k] != b.get(k)}

class Model(torch.nn.Module):
    def __init__(self, inside=None):
        super().__init__()
        self.block = victims.Block()
        self.inside = inside
    def forward(self, x):
        if self.inside:
            inside, self.inside = self.inside, None
            inside()
        return self.block(user_code.scale(F.relu(x)))

def exported(model, path):
    torch.onnx.export(model, (torch.tensor([3.0, -1.0, 2.0]),), path, **TS)
    m = onnx.load(path)
    return [n.op_type for n in m.graph.node], m
"""


# torch.export's capture changes how nn.Module calls work for the whole
# process (torch.jit.script of a module fails on every other thread while
# it captures, and for ever in a child forked meanwhile), without torchrw
# as with it: that one is torch's.
TORCH_OWN = {"script Block"} if EXPORTER == "torch.export" else set()


def _probe_run(tmp_path, code):
    (tmp_path / "victims.py").write_text(VICTIMS)
    (tmp_path / "user_code.py").write_text(USER_CODE)
    (tmp_path / "trw_patches.py").write_text(PATCHES)
    script = (PROBE + code).replace("\nTORCH_OWN_HERE\n", "\nTORCH_OWN = %r\n" % TORCH_OWN)
    return run_script(tmp_path, script, backend="tensorrt",
                      TORCHRW_PYTHON="trw_patches", PYTHONPATH=tmp_path)


# What the export computes tells whether it was rewritten: the graph of
# 100*relu(x)-1 has the scale rewriter's constant 100 and Block's Sub.
REWRITTEN = """
def is_rewritten(ops, m):
    from onnx import numpy_helper
    consts = [numpy_helper.to_array(t).tolist() for t in m.graph.initializer]
    consts += [numpy_helper.to_array(a.t).tolist() for n in m.graph.node
               if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    return "Sub" in ops and 100.0 in consts
"""


def test_other_threads_see_the_originals_while_one_traces(tmp_path):
    code = REWRITTEN + """
before = probe()
started, finish = threading.Barrier(2), threading.Barrier(2)
def hold():
    started.wait()
    finish.wait()
result = {}
def export_thread():
    result["ops"] = exported(Model(inside=hold), "a.onnx")
a = threading.Thread(target=export_thread)
a.start()
started.wait()
during = probe()
finish.wait()
a.join()
after = probe()
print("during", diff(before, during))
print("after", diff(before, after))
print("rewritten", is_rewritten(*result["ops"]))
"""
    run = _probe_run(tmp_path, code).check()
    assert "rewritten True" in run.stdout, run.stdout + run.stderr
    assert "during {}" in run.stdout, run.stdout
    assert "after {}" in run.stdout, run.stdout


# In a fork child: the originals everywhere (module dicts included), and
# exports of its own that rewrite.  CHILD runs in the child and exits.
CHILD = REWRITTEN + """
def traced_rewritten(inside=None):
    traced = torch.jit.trace(Model(inside), (torch.tensor([3.0, -1.0, 2.0]),))
    return traced(torch.tensor([3.0, -1.0, 2.0])).tolist() == [299.0, -1.0, 199.0]

def child_checks(inherits_torch_trace=False):
    # A child forked inside torch's tracer is inside it too (torch refuses
    # a trace there, and scripting a module that the tracer does not know):
    # that thread's own trace and its scripting of Block are torch's to refuse.
    def seen():
        if inherits_torch_trace and TORCH_OWN:
            # Inside torch.export's capture torch's modes (fake tensors) are
            # the forking thread's: look from a new thread.
            box = {}
            t = threading.Thread(target=lambda: box.update(d=diff(before, probe())))
            t.start()
            t.join()
            d = box["d"]
        else:
            d = diff(before, probe())
        if inherits_torch_trace:
            d.pop("script Block", None)
        return d
    originals = (vars(victims)["scale"] is ORIG["scale"] and vars(F)["relu"] is ORIG["relu"]
                 and vars(user_code)["scale"] is ORIG["scale"]
                 and victims.Block.__dict__["forward"] is ORIG["forward"]
                 and type(victims) is type(os) and type(F) is type(os))
    first = seen()
    print("child sees", originals, first, flush=True)
    own = inherits_torch_trace or traced_rewritten()
    # A trace of the child's own on a new thread, held midway while this
    # thread (which traced, or not, in the parent) looks: the originals.
    started, finish = threading.Barrier(2), threading.Barrier(2)
    def hold():
        started.wait()
        finish.wait()
    box = {}
    t = threading.Thread(target=lambda: box.update(ok=traced_rewritten(hold)))
    t.start()
    started.wait()
    during = seen()
    finish.wait()
    t.join()
    after = seen() == {} and vars(victims)["scale"] is ORIG["scale"]
    print("child traces", own, box.get("ok"), during, after, flush=True)
    return originals and first == {} and own and box.get("ok") and during == {} and after

def fork_and_check(inherits_torch_trace=False):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if child_checks(inherits_torch_trace) else 3
        except BaseException:
            traceback.print_exc()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)
"""


def test_fork_child_of_a_thread_while_another_traces_has_no_patches(tmp_path):
    code = CHILD + """
before = probe()
started, finish = threading.Barrier(2), threading.Barrier(2)
def hold():
    started.wait()
    finish.wait()
result = {}
a = threading.Thread(target=lambda: result.update(ops=exported(Model(inside=hold), "a.onnx")))
a.start()
started.wait()
print("status", fork_and_check())
finish.wait()
a.join()
print("parent rewritten", is_rewritten(*result["ops"]))
print("parent after", diff(before, probe()))
"""
    run = _probe_run(tmp_path, code).check()
    assert "status 0" in run.stdout, run.stdout + run.stderr
    assert "parent rewritten True" in run.stdout and "parent after {}" in run.stdout, run.stdout


def test_fork_child_of_the_tracing_thread_has_no_patches(tmp_path):
    code = CHILD + """
import multiprocessing
before = probe()
status = {}
def inside():
    status["fork"] = fork_and_check(inherits_torch_trace=True)
    # multiprocessing's fork start method, from inside the trace as well.
    p = multiprocessing.get_context("fork").Process(
        target=lambda: sys.exit(0 if child_checks(inherits_torch_trace=True) else 3))
    p.start()
    p.join()
    status["multiprocessing"] = p.exitcode
ops = exported(Model(inside=inside), "a.onnx")
print("status", status)
print("parent rewritten", is_rewritten(*ops))
print("parent after", diff(before, probe()))
"""
    run = _probe_run(tmp_path, code).check()
    assert "status {'fork': 0, 'multiprocessing': 0}" in run.stdout, run.stdout + run.stderr
    assert "parent rewritten True" in run.stdout and "parent after {}" in run.stdout, run.stdout
