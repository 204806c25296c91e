"""torchrw run's status line on a terminal (issue 12, item 20)."""
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time

from conftest import BUILD, EXPORTER, PYTHON, TORCH, with_ts

TORCHRW = BUILD / "tools" / "torchrw"

# An export slowed down in each phase, so that the line is redrawn in
# each: the model's forward sleeps (tracing), the conversion sleeps
# before it starts (ONNX conversion), and serialisation sleeps after it
# (writing).  The last line checks that the channel is close-on-exec.
SLOW_EXPORT = """
import os, time, torch
class M(torch.nn.Module):
    def forward(self, x):
        for _ in range(20):
            x = torch.neg(x.repeat(2))[:4]
        time.sleep(0.7)
        return x
def slowly_before(owner, name):
    original = getattr(owner, name)
    def slow(*a, **k):
        time.sleep(0.7)
        return original(*a, **k)
    setattr(owner, name, slow)
def slowly_after(owner, name):
    original = getattr(owner, name)
    def slow(*a, **k):
        r = original(*a, **k)
        time.sleep(0.7)
        return r
    setattr(owner, name, slow)
if TS or not hasattr(torch.onnx, "_internal") or not hasattr(torch, "export"):
    slowly_before(torch._C, "_jit_pass_onnx")
    slowly_after(torch._C.Graph, "_export_onnx")
else:
    from torch.onnx._internal.exporter import _core, _onnx_program
    slowly_before(_core, "_exported_program_to_onnx_program")
    slowly_after(_onnx_program.ONNXProgram, "save")
torch.onnx.export(M(), (torch.arange(4.0),), "model.onnx", opset_version=%d, **TS)
import fcntl
fd = int(os.environ.get("TORCHRW_STATUS_FD", "-1:0").split(":")[0])
closed = fd >= 0 and bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
os.write(1, ("channel close-on-exec: " + str(closed) + "\\n").encode())  # one write
""" % (18 if EXPORTER == "torch.export" else 11)

if TORCH < (2, 0):
    SLOW_EXPORT = SLOW_EXPORT.replace(
        'if TS or not hasattr(torch.onnx, "_internal") or not hasattr(torch, "export"):', "if True:")


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCHRW_")}
    env.pop("LD_PRELOAD", None)
    env["TERM"] = "xterm"
    return env


ROWS, COLS = 24, 120


def screen(data):
    """What a terminal of ROWS x COLS shows after data, and its scrolling
    region: carriage return, line feed (scrolling the region at its
    bottom), DECSC/DECRC (ESC 7, ESC 8), cursor position (CSI r;c H),
    cursor up (CSI n A), erase line (CSI K, CSI 2K) and the scrolling
    region (CSI t;b r) are applied; other escapes are dropped."""
    rows = [[" "] * COLS for _ in range(ROWS)]
    r = c = 0
    top, bottom = 0, ROWS - 1
    saved = (0, 0)
    i = 0
    while i < len(data):
        ch = data[i]
        if ch == "\r":
            c = 0
        elif ch == "\n":
            if r == bottom:
                del rows[top]
                rows.insert(bottom, [" "] * COLS)
            elif r < ROWS - 1:
                r += 1
        elif ch == "\x1b":
            if data[i + 1:i + 2] == "7":
                saved = (r, c)
                i += 2
                continue
            if data[i + 1:i + 2] == "8":
                r, c = saved
                i += 2
                continue
            m = re.match(r"\x1b\[([0-9;]*)([A-Za-z])", data[i:])
            if m:
                args = [int(a) for a in m.group(1).split(";") if a]
                op = m.group(2)
                if op == "K":
                    start = 0 if args == [2] else c
                    rows[r][start:] = [" "] * (COLS - start)
                elif op == "H":
                    r, c = (args + [1, 1])[0] - 1, (args + [1, 1])[1] - 1
                elif op == "A":
                    r = max(top, r - (args[0] if args else 1))
                elif op == "r":
                    top, bottom = (args[0] - 1, args[1] - 1) if args else (0, ROWS - 1)
                    r = c = 0
            i += len(m.group(0)) if m else 1
            continue
        elif c < COLS:
            rows[r][c] = ch
            c += 1
        i += 1
    return ["".join(l).rstrip() for l in rows], (top, bottom)


def run_on_terminal(tmp_path, *args):
    """torchrw run with stdout and stderr on a pseudo-terminal: everything
    the terminal received, and the exit status."""
    (tmp_path / "export.py").write_text(with_ts(SLOW_EXPORT))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    p = subprocess.Popen([str(TORCHRW), "run", *args, "--backend", "tensorrt", "--", PYTHON,
                          "export.py"], cwd=tmp_path, env=clean_env(), stdin=subprocess.DEVNULL,
                         stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer is gone
                break
            if not chunk:
                break
            out += chunk
    os.close(master)
    return out.decode("utf-8", "replace"), p.wait(timeout=60)


STATUS = re.compile(r"torchrw: (running|tracing|ONNX conversion|writing) \| (\d+) operators? "
                    r"traced \| (\d+) rewrites? fired \| (\d+\.\d) s")


def test_status_line_shows_phases_counters_and_time_then_leaves_the_terminal_clean(tmp_path):
    raw, code = run_on_terminal(tmp_path)
    assert code == 0, raw
    # Every drawing of the line: save the cursor, the bottom row, erase
    # it, the line, back to the cursor.
    lines = re.findall(r"\x1b7\x1b\[%d;1H\x1b\[2K([^\x1b]*)\x1b8" % ROWS, raw)
    drawn = [STATUS.fullmatch(d) for d in lines]
    assert drawn and all(drawn), lines
    phases = [m.group(1) for m in drawn]
    for phase in ("tracing", "ONNX conversion", "writing"):
        assert phase in phases, phases
    # In order, and the time ticks while each sleeps.
    assert phases.index("tracing") < phases.index("ONNX conversion") < phases.index("writing")
    times = [float(m.group(4)) for m in drawn]
    assert times == sorted(times) and len(set(times)) >= 6, times
    # By the time it writes, the trace (TorchScript) or the lowering
    # (torch.export) has recorded the 20 repeat, neg and slice calls at
    # least, and the tensorrt rewriter of repeat has fired.
    writing = [m for m in drawn if m.group(1) == "writing"]
    assert min(int(m.group(2)) for m in writing) >= 20, lines
    assert min(int(m.group(3)) for m in writing) >= 1, lines
    # The terminal ends clean: the status row erased, the whole screen
    # scrolling again, and what the command and torchrw printed whole.
    shown, region = screen(raw)
    assert region == (0, ROWS - 1), region
    assert not any("operators traced" in l for l in shown), shown
    assert "channel close-on-exec: True" in shown, shown
    assert any("finished in" in l for l in shown), shown
    assert any("fired      builtin:torch.Tensor.repeat@tensorrt" in l for l in shown), shown

def test_no_status_line_when_asked_or_when_stderr_is_not_a_terminal(tmp_path):
    # --no-status on a terminal: nothing drawn.
    raw, code = run_on_terminal(tmp_path, "--no-status")
    assert code == 0, raw
    assert "\x1b" not in raw and "operators traced" not in raw
    assert "channel close-on-exec: False" in raw
    # stderr a pipe, stdin and stdout on a terminal: stderr is byte for byte
    # what it is with --no-status (the durations aside), and CMD gets no channel.
    master, slave = pty.openpty()
    outs = []
    for extra in ([], ["--no-status"]):
        p = subprocess.run([str(TORCHRW), "run", *extra, "--backend", "tensorrt", "--", PYTHON,
                            "export.py"], cwd=tmp_path, env=clean_env(), stdin=slave,
                           stdout=slave, stderr=subprocess.PIPE, timeout=300)
        assert p.returncode == 0, p.stderr
        outs.append(re.sub(rb"finished in \d+\.\d\d s", b"finished in T s", p.stderr))
    os.close(slave)
    out = b""
    while select.select([master], [], [], 0.5)[0]:
        try:
            out += os.read(master, 65536)
        except OSError:
            break
    os.close(master)
    assert outs[0] == outs[1]
    assert b"\x1b" not in outs[0] and b"operators traced" not in outs[0]
    assert out.count(b"channel close-on-exec: False") == 2, out


def test_terminal_is_clean_after_a_signal(tmp_path):
    for sig, code in ((signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGQUIT, -signal.SIGQUIT)):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        p = subprocess.Popen([str(TORCHRW), "run", "--backend", "tensorrt", "--", "sh", "-c",
                              "echo started; exec sleep 30"], cwd=tmp_path, env=clean_env(),
                             stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                             start_new_session=True)
        os.close(slave)
        out = b""
        while b"operators traced" not in out:  # the line is up
            assert select.select([master], [], [], 10)[0], out
            out += os.read(master, 65536)
        p.send_signal(sig)
        assert p.wait(timeout=30) == code
        try:
            os.killpg(p.pid, signal.SIGKILL)  # SIGQUIT is torchrw's alone: sleep is left
        except ProcessLookupError:
            pass
        while select.select([master], [], [], 0.5)[0]:
            try:
                out += os.read(master, 65536)
            except OSError:
                break
        os.close(master)
        shown, region = screen(out.decode())
        assert region == (0, ROWS - 1), (sig, out)
        assert "started" in shown and not any("operators traced" in l for l in shown), (sig, shown)
