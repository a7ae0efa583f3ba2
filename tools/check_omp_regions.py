#!/usr/bin/env python3
"""Issue 21 item 1's class of bug: an exception that leaves an OpenMP region calls
std::terminate. Every file under src/, kernels/, tests/ and tools/ holding an OpenMP parallel
region must either route its region bodies through OmpErrors (src/common/omp_errors.h) or be
listed below as audited: its regions only do arithmetic on memory allocated before the region
(no allocation, no I/O, no call that can throw). A new region in an unlisted file fails this
check until it is guarded or audited. Exit status 1 lists the offenders."""
import pathlib
import re
import sys

# Audited 2026-12-03: arithmetic only, scratch allocated before the region.
NOTHROW_REGIONS = {
    "src/cpu/cpu_adamw.cpp", "src/cpu/cpu_attention.cpp", "src/cpu/cpu_classifier.cpp",
    "src/cpu/cpu_elementwise.cpp", "src/cpu/cpu_encoder.cpp", "src/cpu/cpu_layernorm.cpp",
    "src/cpu/cpu_matmul.cpp", "src/cpu/cpu_rope.cpp", "src/data/loader.cpp",
    "src/bench/core_scaling.cpp",  # an integer loop in registers, nothing allocated
}
REGION = re.compile(r"^\s*#\s*pragma\s+omp\s+(parallel|for|task|sections)\b", re.M)


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    bad = []
    for sub in ("src", "kernels", "tests", "tools", "include"):
        for p in sorted((root / sub).rglob("*")):
            if p.suffix not in (".cpp", ".cc", ".h", ".cu", ".cuh") or not p.is_file():
                continue
            text = p.read_text(errors="replace")
            if not REGION.search(text):
                continue
            rel = p.relative_to(root).as_posix()
            if rel in NOTHROW_REGIONS or "OmpErrors" in text:
                continue
            bad.append(rel)
    if bad:
        print("OpenMP regions neither guarded by OmpErrors nor audited as non-throwing:")
        for b in bad:
            print("  " + b)
        return 1
    print("every OpenMP region is guarded or audited")
    return 0


if __name__ == "__main__":
    sys.exit(main())
