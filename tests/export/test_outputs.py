"""What torchrw writes at the user's request: TORCHRW_REPORT and
TORCHRW_TRACE (issue 12).  Nothing but what was asked for is written,
nothing that is not a regular file is replaced, no name is predictable,
the model file is never touched, and processes that export side by side
lose no report record."""
import os
import stat
import threading

import onnx
import pytest

from conftest import read_report, run_script

EXPORT = """
import os, torch
class M(torch.nn.Module):
    def forward(self, x):
        return x.repeat(3)
torch.onnx.export(M(), (torch.arange(4.0),), "model.onnx", **TS)
print("EXPORTED")
"""


def errors(run):
    return [l for l in run.stderr.splitlines() if l.startswith("torchrw: error:")]


def exported(run):
    """The export went ahead and the model is a model."""
    run.check()
    assert "EXPORTED" in run.stdout
    onnx.checker.check_model(onnx.load(str(run.path("model.onnx"))))


# ---- files that are not regular files are written through, never replaced --


def test_report_and_trace_write_through_a_character_device(tmp_path):
    # A device node of the test's own (the real /dev/null stays out of it):
    # /dev/null's numbers.
    null = tmp_path / "null"
    try:
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root")
    run = run_script(tmp_path, EXPORT, backend="tensorrt", TORCHRW_REPORT=null,
                     TORCHRW_TRACE=null)
    exported(run)
    assert stat.S_ISCHR(os.lstat(null).st_mode), "the device node was replaced"
    assert errors(run) == []
    # Nothing else written: torch.export's exporter adds model.onnx.data.
    assert set(os.listdir(tmp_path)) - {"model.onnx.data"} == {"export.py", "model.onnx", "null"}


def test_report_writes_through_a_symlink_to_stdout(tmp_path):
    # What /dev/stdout is: a symlink to the process's descriptor 1 (a pipe here).
    out = tmp_path / "stdout"
    out.symlink_to("/proc/self/fd/1")
    run = run_script(tmp_path, EXPORT, backend="tensorrt", TORCHRW_REPORT=out)
    exported(run)
    assert out.is_symlink() and os.readlink(out) == "/proc/self/fd/1"
    records = [l for l in run.stdout.splitlines() if l.startswith("{")]
    assert len(records) == 1 and '"builtin:torch.Tensor.repeat@tensorrt"' in records[0]
    assert errors(run) == []


def test_report_writes_into_a_fifo_and_never_blocks(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # Nobody reading: one clear error, and the export goes on.
    run = run_script(tmp_path, EXPORT, backend="tensorrt", TORCHRW_REPORT=fifo)
    exported(run)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    (err,) = errors(run)
    assert "TORCHRW_REPORT" in err and str(fifo) in err and "no reader" in err
    # With a reader: the record goes through it.
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        run = run_script(tmp_path, EXPORT, backend="tensorrt", TORCHRW_REPORT=fifo)
        exported(run)
        data = os.read(fd, 1 << 16).decode()
    finally:
        os.close(fd)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert data.count("\n") == 1 and '"builtin:torch.Tensor.repeat@tensorrt"' in data


# ---- no predictable name ---------------------------------------------------


def test_a_symlink_planted_at_a_temporary_name_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    # The script plants what an attacker would, at every name derived from
    # the report's path and the process id.
    code = """
import os
for name in ("r.json.tmp.%d" % os.getpid(), "r.json.tmp", "r.json.new", "r.json~"):
    os.symlink("victim", name)
""" + EXPORT
    run = run_script(tmp_path, code, backend="tensorrt", TORCHRW_REPORT=tmp_path / "r.json")
    exported(run)
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "r.json").is_symlink()
    assert len(read_report(tmp_path / "r.json")) == 1


# ---- one clear error, nothing else touched ----------------------------------


def test_read_only_report_is_left_alone(tmp_path):
    report = tmp_path / "r.json"
    report.write_text("mine\n")
    report.chmod(0o444)
    run = run_script(tmp_path, EXPORT, backend="tensorrt", TORCHRW_REPORT=report)
    exported(run)
    assert report.read_text() == "mine\n" and (report.stat().st_mode & 0o777) == 0o444
    (err,) = errors(run)
    assert "TORCHRW_REPORT" in err and str(report) in err and "read-only" in err


@pytest.mark.parametrize("var", ["TORCHRW_REPORT", "TORCHRW_TRACE"])
def test_path_in_a_missing_directory(tmp_path, var):
    path = tmp_path / "missing" / "out.txt"
    run = run_script(tmp_path, EXPORT + EXPORT, backend="tensorrt", **{var: path})
    exported(run)
    (err,) = errors(run)
    assert var in err and str(path) in err and "no such directory" in err
    assert "aten::repeat" not in run.stderr, "the trace went elsewhere"
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("first", ["", "first.onnx"])
@pytest.mark.parametrize("var", ["TORCHRW_REPORT", "TORCHRW_TRACE"])
def test_the_models_own_file_is_never_written(tmp_path, var, first):
    # Twice: the second export must not find the first one's text in it.
    # After an export to another file, the output is open when the export
    # to it comes: it is closed then, and stays off.
    other = EXPORT.replace('"model.onnx"', repr(first)) if first else ""
    run = run_script(tmp_path, other + EXPORT + EXPORT, backend="tensorrt", **{var: "model.onnx"})
    exported(run)
    (err,) = errors(run)
    assert var in err and "model.onnx" in err and "output" in err


@pytest.mark.parametrize("var", ["TORCHRW_REPORT", "TORCHRW_TRACE"])
def test_a_directory_is_refused(tmp_path, var):
    (tmp_path / "d").mkdir()
    run = run_script(tmp_path, EXPORT, backend="tensorrt", **{var: tmp_path / "d"})
    exported(run)
    (err,) = errors(run)
    assert var in err and "is a directory" in err
    assert os.listdir(tmp_path / "d") == []


# ---- several writers -------------------------------------------------------


def test_forked_children_and_a_pool_lose_no_record(tmp_path):
    code = """
import multiprocessing, os, torch
class M(torch.nn.Module):
    def forward(self, x):
        return x.repeat(3)
def export(name):
    torch.onnx.export(M(), (torch.arange(4.0),), name, **TS)
    return os.getpid()
export("parent.onnx")
children = []
for i in range(2):
    pid = os.fork()
    if pid == 0:
        export("child%d.onnx" % i)
        os._exit(0)
    children.append(pid)
for pid in children:
    assert os.waitpid(pid, 0)[1] == 0
with multiprocessing.get_context("fork").Pool(2) as pool:
    print("POOL", pool.map(export, ["pool0.onnx", "pool1.onnx", "pool2.onnx"]))
print("EXPORTED")
"""
    report = tmp_path / "r.json"
    run = run_script(tmp_path, code, backend="tensorrt", TORCHRW_REPORT=report).check()
    records = read_report(report)
    assert len(records) == 6, records
    assert len({r["pid"] for r in records}) >= 4
    assert all(r["fired"][0]["name"] == "builtin:torch.Tensor.repeat@tensorrt" for r in records)


def test_records_are_appended_not_rewritten(tmp_path):
    report = tmp_path / "r.json"
    report.write_text('{"earlier": true}\n')
    run = run_script(tmp_path, EXPORT + EXPORT, backend="tensorrt", TORCHRW_REPORT=report)
    exported(run)
    lines = report.read_text().splitlines()
    assert lines[0] == '{"earlier": true}' and len(lines) == 3
