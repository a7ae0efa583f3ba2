#!/usr/bin/env python3
"""Checks a report of `ouro bench all` (tests/bench_all_tests.cmake runs it on the simt smoke run):

  bench.json    follows schema "ouro-bench/1" (src/bench/bench_result.cpp): every key with its type,
                every ratio equal to value / ceiling, null exactly when there is no ceiling;
  bench.md      one table row per record, in the same order, with the same value and ratio;
  roofline.png  a PNG with the plot (tools/bench_report.py).

  check_bench_report.py DIR [--expect-bench kernels,train,generate] [--self-test]

--self-test also proves the checks can fail: it corrupts copies of the report (a wrong ratio, a
lost markdown row, a missing plot, a missing key) and expects each copy to be rejected.
"""
import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

TOP = {"schema": str, "backend": str, "device": str, "date_utc": str, "commit": str, "command": str,
       "small": bool, "records": list, "skipped": list}
NULLABLE_TOP = ("peak_flops", "copy_gbs")
RECORD = {"bench": str, "name": str, "shape": str, "device": str, "value": (int, float), "unit": str,
          "ceiling_name": str}
NULLABLE_NUMBERS = ("ceiling", "ratio", "flops", "bytes", "seconds")
BENCHES = {"kernels", "train", "generate", "comm"}


class Bad(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Bad(msg)


def check_json(report):
    for key, typ in TOP.items():
        need(key in report, f"bench.json: missing key {key!r}")
        need(isinstance(report[key], typ), f"bench.json: {key!r} is {type(report[key]).__name__}")
    need(report["schema"] == "ouro-bench/1", f"bench.json: schema {report['schema']!r}")
    need(report["backend"] in ("cpu", "simt", "cuda"), f"bench.json: backend {report['backend']!r}")
    need(len(report["date_utc"]) == 20 and report["date_utc"].endswith("Z"), f"bench.json: date_utc {report['date_utc']!r}")
    need(report["commit"], "bench.json: empty commit")
    for key in NULLABLE_TOP:
        need(key in report, f"bench.json: missing key {key!r}")
        v = report[key]
        need(v is None or (isinstance(v, (int, float)) and v > 0), f"bench.json: {key!r} = {v!r}")
    need(report["records"], "bench.json: no records")
    for i, r in enumerate(report["records"]):
        where = f"bench.json: records[{i}] ({r.get('name')!r})"
        for key, typ in RECORD.items():
            need(key in r, f"{where}: missing key {key!r}")
            need(isinstance(r[key], typ) and not isinstance(r[key], bool), f"{where}: {key!r} = {r[key]!r}")
        need(r["bench"] in BENCHES, f"{where}: bench {r['bench']!r}")
        need(math.isfinite(r["value"]) and r["value"] >= 0, f"{where}: value {r['value']!r}")
        need(r["unit"], f"{where}: empty unit")
        for key in NULLABLE_NUMBERS:
            need(key in r, f"{where}: missing key {key!r}")
            v = r[key]
            need(v is None or (isinstance(v, (int, float)) and math.isfinite(v) and v > 0), f"{where}: {key!r} = {v!r}")
        if r["ceiling"] is None:
            need(r["ratio"] is None and r["ceiling_name"] == "", f"{where}: a ratio or ceiling name without a ceiling")
        else:
            need(r["ceiling_name"], f"{where}: a ceiling without its name")
            need(r["ratio"] is not None, f"{where}: a ceiling without a ratio")
            want = r["value"] / r["ceiling"]
            need(math.isclose(r["ratio"], want, rel_tol=1e-9), f"{where}: ratio {r['ratio']} != value/ceiling {want}")
    for s in report["skipped"]:
        need(isinstance(s.get("bench"), str) and isinstance(s.get("reason"), str) and s["reason"],
             f"bench.json: skipped entry {s!r}")


def check_markdown(report, text):
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    need(len(rows) >= 2 and rows[0].startswith("| figure | value | unit | ceiling | ratio | device | date | commit"),
         "bench.md: no table header")
    body = rows[1:]
    if body and set(body[0].replace("|", "").strip()) <= set("-"):
        body = body[1:]  # the separator row is "|---|---|..."
    need(len(body) == len(report["records"]), f"bench.md: {len(body)} rows for {len(report['records'])} records")
    for row, r in zip(body, report["records"]):
        cells = [c.strip() for c in row.strip().strip("|").split(" | ")]
        need(len(cells) == 8, f"bench.md: row {row!r} has {len(cells)} cells")
        need(r["name"] in cells[0], f"bench.md: row {row!r} is not record {r['name']!r}")
        need(math.isclose(float(cells[1]), r["value"], rel_tol=1e-3), f"bench.md: value {cells[1]} != {r['value']}")
        if r["ratio"] is None:
            need(cells[4] == "-", f"bench.md: ratio {cells[4]!r} for a record without a ceiling")
        else:
            need(math.isclose(float(cells[4]), r["ratio"], rel_tol=1e-3), f"bench.md: ratio {cells[4]} != {r['ratio']}")
        need(cells[6] == report["date_utc"][:10] and cells[7] == report["commit"], f"bench.md: row {row!r}: date/commit")


def check_png(path):
    need(path.is_file(), f"{path}: missing")
    data = path.read_bytes()
    need(data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG")
    need(len(data) > 10_000, f"{path}: {len(data)} bytes: too small for a plot")


def check(dir_, expect):
    dir_ = Path(dir_)
    try:
        report = json.loads((dir_ / "bench.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise Bad(f"bench.json: {e}")
    check_json(report)
    present = {r["bench"] for r in report["records"]}
    for b in expect:
        need(b in present, f"bench.json: no {b!r} records")
    check_markdown(report, (dir_ / "bench.md").read_text())
    check_png(dir_ / "roofline.png")
    return report


def self_test(dir_, expect):
    """Each corruption of a copy of the report must be rejected."""
    def wrong_ratio(d):
        j = json.loads((d / "bench.json").read_text())
        r = next(r for r in j["records"] if r["ratio"] is not None)
        r["ratio"] *= 1.01
        (d / "bench.json").write_text(json.dumps(j))

    def lost_row(d):
        lines = (d / "bench.md").read_text().splitlines()
        last = max(i for i, line in enumerate(lines) if line.startswith("| "))
        (d / "bench.md").write_text("\n".join(lines[:last] + lines[last + 1:]) + "\n")

    def no_png(d):
        (d / "roofline.png").unlink()

    def missing_key(d):
        j = json.loads((d / "bench.json").read_text())
        del j["records"][0]["unit"]
        (d / "bench.json").write_text(json.dumps(j))

    for corrupt in (wrong_ratio, lost_row, no_png, missing_key):
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "report"
            shutil.copytree(dir_, copy)
            corrupt(copy)
            try:
                check(copy, expect)
            except Bad as e:
                print(f"self-test: {corrupt.__name__} rejected ({e})")
                continue
            raise Bad(f"self-test: the checker accepted a report with {corrupt.__name__}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--expect-bench", default="", help="comma list of benches that must have records")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    expect = [b for b in args.expect_bench.split(",") if b]
    try:
        report = check(args.dir, expect)
        if args.self_test:
            self_test(Path(args.dir), expect)
    except Bad as e:
        sys.exit(f"check_bench_report: {args.dir}: {e}")
    print(f"check_bench_report: {args.dir}: {len(report['records'])} records, bench.md and roofline.png OK")


if __name__ == "__main__":
    main()
