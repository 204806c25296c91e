#!/usr/bin/env python3
"""Writes data/backends/tensorrt-V.json for TensorRT 8.6 and 10.15 from
onnx-tensorrt's docs/operators.md at a commit (or a branch, where the
copy read has no known commit), the way tensorrt-8.5.json reads 8.5's.

    bench/tensorrt_tables.py OPERATORS_MD --version 10.15 --ref main \
        --base data/backends/tensorrt-8.5.json --base-md 8.5/operators.md \
        > data/backends/tensorrt-10.15.json

Every operator the support matrix lists becomes an entry: N is
{"supported": false}; Y is true, or an object with the row's types
("types", documentation only: the checker does not judge them) and its
restrictions ("note").  The restrictions a rule can judge are rules
(RULES below, one per restriction, each citing the row).  8.5's rules
whose restriction reads the same in this version's row, or that come
from 8.5's importer source and not from its support matrix, are carried
over with their 8.5 source, and say so.  An operator the matrix does not
list is missing from the table, so `torchrw check` flags it.
"""
import argparse
import copy
import json
import re
import sys

URL = "https://github.com/onnx/onnx-tensorrt/blob/{ref}/docs/operators.md"


def rows(md):
    """(operator, 'Y'/'N', types, restriction) for each row of the matrix."""
    out = {}
    for line in md.splitlines():
        m = re.match(r"\|\s*([A-Za-z][A-Za-z0-9]*)\s*\|\s*([YN])\s*\|?(.*)$", line)
        if not m or m[1] == "Operator":
            continue
        cells = [c.strip() for c in m[3].split("|")]
        types = cells[0] if cells else ""
        restriction = " ".join(c for c in cells[1:] if c)
        out[m[1]] = (m[2], types, restriction.replace("`", "'").replace("<br />", " "))
    return out


def opset_range(md):
    m = re.search(r"inclusive range of opset (\d+) to opset (\d+)", md)
    if m:
        return int(m[1]), int(m[2])
    m = re.search(r"operators up to Opset (\d+)", md)
    return None, int(m[1])


def constant(index, name, since=None):
    rule = {"index": index, "name": name, "constant": True}
    if since:
        rule["since"] = since
    return rule


def allowed(name, values, default, since=None):
    rule = {"name": name, "allowed": values, "default": default}
    if since:
        rule["since"] = since
    return rule


REDUCE_AXES = {op: [constant(1, "axes", 13 if op == "ReduceSum" else 18)]
               for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                          "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd",
                          "ReduceSum", "ReduceSumSquare")}

# The rules a row's restriction states, by the restriction's words:
# (operator, a phrase of the restriction) -> {"inputs": [...], "attributes": [...]}.
RULES = [
    ("CumSum", "'axis' must be", {"inputs": [constant(1, "axis")]}),
    ("Dropout", "'is_training' must be an initializer",
     {"inputs": [constant(2, "training_mode", 12)]}),
    ("Slice", "'axes' must be an initializer", {"inputs": [constant(3, "axes", 10)]}),
    ("Squeeze", "'axes' must be", {"inputs": [constant(1, "axes", 13)]}),
    ("Unsqueeze", "'axes' must be", {"inputs": [constant(1, "axes", 13)]}),
    ("OneHot", "'depth' must be", {"inputs": [constant(1, "depth")]}),
    ("STFT", "'frame_step' and 'window' must be",
     {"inputs": [constant(1, "frame_step"), constant(2, "window")]}),
    ("ScatterND", "'reduction' other than 'none'",
     {"attributes": [allowed("reduction", ["none"], "none", 16)]}),
    ("LSTM", "'layout' attribute must be 0",
     {"attributes": [allowed("input_forget", [0], 0), allowed("layout", [0], 0, 14)]}),
    ("TopK", "'sorted' must be 1", {"attributes": [allowed("sorted", [1], 1, 11)]}),
    ("Resize", "Antialiasing is not supported",
     {"attributes": [allowed("antialias", [0], 0, 18),
                     allowed("keep_aspect_ratio_policy", ["stretch"], "stretch", 18)]}),
    ("Resize", "Supported resize modes", {"attributes": [
        allowed("mode", ["nearest", "linear"], "nearest"),
        allowed("coordinate_transformation_mode",
                ["half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                 "align_corners"], "half_pixel", 11),
        allowed("nearest_mode", ["floor", "ceil", "round_prefer_floor", "round_prefer_ceil"],
                "round_prefer_floor", 11)]}),
] + [(op, "'axes' must be an initializer", {"inputs": r}) for op, r in REDUCE_AXES.items()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("md")
    ap.add_argument("--version", required=True)
    ap.add_argument("--ref", required=True,
                    help="the commit the file was read at, or the branch (main) when the "
                         "copy read has no known commit; the sources cite the file there")
    ap.add_argument("--base", required=True, help="tensorrt-8.5.json")
    ap.add_argument("--base-md", required=True, help="8.5's docs/operators.md")
    a = ap.parse_args()
    md = open(a.md).read()
    base = json.load(open(a.base))
    base_ops = base["domains"]["ai.onnx"]["ops"]
    base_rows = rows(open(a.base_md).read())
    url = URL.format(ref=a.ref)
    ref = a.ref[:7] if re.fullmatch(r"[0-9a-f]{40}", a.ref) else a.ref
    src = f"onnx/onnx-tensorrt docs/operators.md, TensorRT {a.version} support matrix: {url}"
    lo, hi = opset_range(md)
    ops = {}
    for op, (yn, types, restriction) in sorted(rows(md).items()):
        if yn == "N":
            ops[op] = {"supported": False}
            if types:
                ops[op]["note"] = types
            continue
        entry = {"types": [t.strip() for t in types.split(",") if t.strip()]}
        if restriction:
            entry["note"] = restriction
        for rop, phrase, rule in RULES:
            if rop == op and phrase in restriction:
                for key, items in rule.items():
                    for item in copy.deepcopy(items):
                        item["source"] = f"{src} ({op}: {restriction})"
                        entry.setdefault(key, []).append(item)
        old = base_ops.get(op)
        if isinstance(old, dict):
            same_row = base_rows.get(op, ("", "", None))[2] == restriction
            for key in ("inputs", "attributes", "dtypes"):
                for item in old.get(key, []):
                    s = item.get("source", "")
                    from_matrix = "docs/operators.md, TensorRT 8.5" in s and \
                        "builtin_op_importers" not in s
                    # A rule 8.5's matrix stated that this row states too was
                    # written above from this row; one from 8.5's importer
                    # source (or other sources) is carried over, and says so.
                    if from_matrix or key in entry and any(
                            i.get("name") == item.get("name") for i in entry[key]):
                        continue
                    if "constant" in item and op == "TopK":
                        continue  # 8.6 and 10.x take a run-time K (their rows drop the rule)
                    if op == "Concat" and item.get("when") == "dynamic" and \
                            "BOOL" in entry["types"]:
                        continue  # this row lists BOOL
                    item = copy.deepcopy(item)
                    item["source"] = s + f" (carried from the 8.5 table; TensorRT " \
                        f"{a.version}'s row: {restriction or 'no restriction'})"
                    entry.setdefault(key, []).append(item)
            if same_row and old.get("note") and "note" not in entry:
                entry["note"] = old["note"]
        ops[op] = entry
    opset = {"max": hi, "source": f"{src} ('" + (
        f"supports operators in the inclusive range of opset {lo} to opset {hi}" if lo
        else f"supports operators up to Opset {hi}") + "')"}
    if lo:
        opset = {"min": lo, **opset}
    table = {
        "backend": "tensorrt",
        "version": a.version,
        "title": f"TensorRT {a.version} ONNX parser (onnx-tensorrt docs/operators.md at "
                 f"{ref})",
        "source": src,
        "generated_by": "bench/tensorrt_tables.py (the support matrix; 8.5's importer rules "
                        "carried where marked)",
        "domains_source": src + " (the support matrix covers the ONNX operator set only; "
                                "other domains need TensorRT plugins)",
        "domains": {"ai.onnx": {"source": src, "opset": opset, "ops": ops}},
        "graph": base.get("graph", {}),
    }
    json.dump(table, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
