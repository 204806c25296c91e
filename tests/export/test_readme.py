"""Every ```python, ```c and ```sh block of README.md and of docs/*.md runs
as written (issues 10 and 24).  They run in document order (README.md,
then the docs by name), in a directory that looks like a
checkout (links to the repository's files, build/ to the build under
test, .venv/bin/python to the interpreter under test), so that a block may
use a file an earlier block wrote:

- python: run as a script with build/python on PYTHONPATH, as the README
  says to without preloading;
- c: compiled as a plugin against include/torchrw.h (-Wall -Werror) and
  loaded through TORCHRW_PLUGINS into examples/export_repeat.py's export
  for tensorrt;
- sh: run by bash -e.

An HTML comment on the line before a block says more:
`<!-- readme-test: file NAME -->` also saves the block as NAME;
`<!-- readme-test: skip (reason) -->` does not run it (the reason is
required and printed).  A block that fails fails the test, with its line
and output."""
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import BUILD, PYTHON, ROOT


def documents():
    """README.md, then docs/*.md by name."""
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->\s*$")
LANGS = ("python", "c", "sh")


def blocks(text):
    """(line, lang, code, directive or None) of each fenced block."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        d = DIRECTIVE.match(lines[start - 1]) if start > 0 else None
        out.append((start + 1, lang, "\n".join(lines[start + 1:end]) + "\n",
                    d.group(1) if d else None))
        i = end + 1
    return out


def checkout(tmp_path):
    """A directory that looks like the repository with the build under test."""
    work = tmp_path / "checkout"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in ("build", ".venv", ".git"):
            (work / entry.name).symlink_to(entry)
    (work / "build").symlink_to(BUILD)
    venv = Path(PYTHON).parent.parent
    if (venv / "pyvenv.cfg").exists():
        # A venv's interpreter finds its packages from where it is called.
        (work / ".venv").symlink_to(venv)
    else:
        (work / ".venv" / "bin").mkdir(parents=True)
        (work / ".venv" / "bin" / "python").symlink_to(PYTHON)
    return work


def run_block(work, tag, lang, code):
    """Runs one block; a CompletedProcess."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TORCHRW_") and k not in ("LD_PRELOAD", "PYTHONPATH")}
    script = work / f"readme_{tag}.{ {'python': 'py', 'c': 'c', 'sh': 'sh'}[lang] }"
    script.write_text(code)
    if lang == "python":
        env["PYTHONPATH"] = str(work / "build" / "python")
        cmd = [str(work / ".venv" / "bin" / "python"), str(script)]
    elif lang == "sh":
        cmd = ["bash", "-e", str(script)]
    else:
        plugin = work / f"readme_{tag}.so"
        cc = os.environ.get("CC", "cc")
        built = subprocess.run([cc, "-shared", "-fPIC", "-Wall", "-Werror",
                                f"-I{ROOT / 'include'}", "-o", str(plugin), str(script)],
                               cwd=work, capture_output=True, text=True)
        if built.returncode != 0:
            return built
        env.update(TORCHRW_PLUGINS=str(plugin), TORCHRW_BACKEND="tensorrt",
                   LD_PRELOAD=str(work / "build" / "lib" / "libtorchrw.so"))
        cmd = [str(work / ".venv" / "bin" / "python"), "examples/export_repeat.py",
               f"readme_{tag}.onnx"]
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)


def test_readme_blocks_run_as_written(tmp_path, capsys):
    work = checkout(tmp_path)
    ran, skipped, failed = 0, [], []
    for doc in documents():
        where = doc.relative_to(ROOT)
        for line, lang, code, directive in blocks(doc.read_text()):
            if lang not in LANGS:
                assert not directive, f"{where}:{line}: readme-test on a ```{lang} block"
                continue
            if directive and directive.startswith("skip"):
                reason = re.fullmatch(r"skip \((.+)\)", directive)
                assert reason, f"{where}:{line}: a skip says why: skip (reason), not {directive!r}"
                skipped.append(f"{where}:{line} ({reason.group(1)})")
                continue
            if directive:
                name = re.fullmatch(r"file (\S+)", directive)
                assert name, f"{where}:{line}: unknown readme-test directive {directive!r}"
                (work / name.group(1)).write_text(code)
            proc = run_block(work, f"{doc.stem}_{line}", lang, code)
            ran += 1
            if proc.returncode != 0:
                failed.append(f"{where}:{line} (```{lang}) exited {proc.returncode}:\n"
                              f"{proc.stdout}{proc.stderr}")
    with capsys.disabled():
        print(f"\nREADME.md and docs/: {ran} blocks ran, {len(skipped)} skipped", file=sys.stderr)
        for s in skipped:
            print(f"  skipped {s}", file=sys.stderr)
    assert not failed, "\n\n".join(failed)
    assert ran > 0
