#!/usr/bin/env python3
"""Static report of every CUDA kernel, no GPU needed (tools/kernel_report.sh runs this).

For each kernels/*.cu and each architecture: nvcc compiles a cubin with `-Xptxas -v` (registers,
shared memory, stack frame, spill stores/loads per kernel), and cuobjdump disassembles it (SASS
instruction counts: HMMA/HGMMA tensor-core instructions, 128-bit global/shared loads and stores,
LDSM (ldmatrix), LDGSTS (cp.async)). Prints a markdown table; with --check, exits non-zero when
a kernel that must use tensor cores has no HMMA/HGMMA, or when any kernel spills.
"""
import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Kernels that must run on tensor cores: (file, regex on the demangled kernel name).
NEEDS_TENSOR_CORES = [
    ("matmul.cu", r"^gemm_tc_kernel"),
    ("attention.cu", r"^attention_(forward|backward_dkv|backward_dq)_kernel"),
]

SASS_COUNTS = {
    "hmma": re.compile(r"\b(HMMA|HGMMA)\b"),
    "ldg128": re.compile(r"\bLDG\.E[.\w]*\.128\b"),
    "stg128": re.compile(r"\bSTG\.E[.\w]*\.128\b"),
    "lds128": re.compile(r"\bLDS\.128\b|\bLDS\.U\.128\b"),
    "ldsm": re.compile(r"\bLDSM\b"),
    "ldgsts": re.compile(r"\bLDGSTS\b"),
}


def find_tool(name, extra):
    for cand in extra:
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return shutil.which(name)


def demangle(names):
    if not names:
        return {}
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout
    return dict(zip(names, out.splitlines()))


def short_name(pretty):
    """'void ouro::kernels::(anonymous namespace)::k<64>(float*, int)' -> 'k<64>'."""
    s = pretty.replace("(anonymous namespace)::", "").replace("ouro::kernels::", "")
    if s.endswith(")"):  # drop the parameter list: the last balanced (...)
        depth = 0
        for i in range(len(s) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(s[i], 0)
            if depth == 0:
                s = s[:i]
                break
    return re.sub(r"^void ", "", s)


def compile_one(nvcc, src, arch, tmp):
    cubin = Path(tmp) / f"{src.stem}_{arch}.cubin"
    cmd = [nvcc, "-std=c++20", "--expt-relaxed-constexpr", "-O3", f"-arch={arch}", "-cubin",
           "-Xptxas", "-v", f"-I{ROOT / 'include'}", f"-I{ROOT}", str(src), "-o", str(cubin)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"kernel_report: nvcc failed on {src} for {arch}:\n{r.stderr}")
    return parse_ptxas(r.stderr), cubin


def parse_ptxas(text):
    """kernel -> {regs, smem, stack, spill_st, spill_ld} from ptxas -v output."""
    info, cur = {}, None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            cur = m.group(1)
            info[cur] = {"regs": 0, "smem": 0, "stack": 0, "spill_st": 0, "spill_ld": 0}
            continue
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            cur = m.group(1) if m.group(1) in info else None
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            info[cur].update(stack=int(m.group(1)), spill_st=int(m.group(2)), spill_ld=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            info[cur]["regs"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            info[cur]["smem"] = int(s.group(1)) if s else 0
    return info


def sass_counts(cuobjdump, cubin):
    """kernel -> instruction counts from the cubin's SASS."""
    env = dict(os.environ)
    env["PATH"] = str(Path(cuobjdump).parent) + os.pathsep + env.get("PATH", "")  # its nvdisasm
    r = subprocess.run([cuobjdump, "-sass", str(cubin)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"kernel_report: cuobjdump failed on {cubin}:\n{r.stderr}")
    counts, cur = {}, None
    for line in r.stdout.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            cur = m.group(1)
            counts[cur] = {k: 0 for k in SASS_COUNTS}
            continue
        if cur is None:
            continue
        for key, pat in SASS_COUNTS.items():
            if pat.search(line):
                counts[cur][key] += 1
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="sm_80,sm_90a", help="comma-separated architectures")
    ap.add_argument("--check", action="store_true", help="fail on a lost HMMA or a spill")
    ap.add_argument("--out", help="also write the markdown table to this file")
    ap.add_argument("files", nargs="*", help="kernel files (default: kernels/*.cu)")
    a = ap.parse_args()

    nvcc = find_tool("nvcc", [os.environ.get("NVCC"), "/usr/local/cuda/bin/nvcc"])
    venv_cuobjdump = sorted((ROOT / ".venv").glob("lib/python*/site-packages/nvidia/cu*/bin/cuobjdump"))
    cuobjdump = find_tool("cuobjdump", [os.environ.get("CUOBJDUMP")] + [str(p) for p in venv_cuobjdump])
    if not nvcc or not cuobjdump:
        sys.exit("kernel_report: needs nvcc (CUDA toolkit) and cuobjdump (tools/setup.sh installs "
                 "PyPI's nvidia-cuda-cuobjdump into .venv)")
    files = [Path(f) for f in a.files] or sorted((ROOT / "kernels").glob("*.cu"))
    archs = a.arch.split(",")

    rows, problems = [], []
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        jobs = {(f, arch): pool.submit(compile_one, nvcc, f, arch, tmp) for f in files for arch in archs}
        for (f, arch), job in jobs.items():
            info, cubin = job.result()
            counts = sass_counts(cuobjdump, cubin)
            names = demangle(sorted(set(info) | set(counts)))
            for mangled in sorted(set(info) | set(counts), key=lambda n: names.get(n, n)):
                pretty = names.get(mangled, mangled)
                short = short_name(pretty)
                i = info.get(mangled, {})
                c = counts.get(mangled, {k: 0 for k in SASS_COUNTS})
                rows.append((f.name, short, arch, i, c))
                spill = i.get("spill_st", 0) + i.get("spill_ld", 0)
                if spill:
                    problems.append(f"{f.name} {short} [{arch}]: {spill} bytes of spills")
                for fname, pat in NEEDS_TENSOR_CORES:
                    if f.name == fname and re.search(pat, short) and c["hmma"] == 0:
                        problems.append(f"{f.name} {short} [{arch}]: no HMMA/HGMMA instruction")

    lines = ["| file | kernel | arch | regs | smem B | stack B | spill B | HMMA | LDG.128 | STG.128 | LDS.128 | LDSM | LDGSTS |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for fname, short, arch, i, c in rows:
        lines.append(f"| {fname} | `{short}` | {arch} | {i.get('regs', '?')} | {i.get('smem', '?')} | "
                     f"{i.get('stack', '?')} | {i.get('spill_st', 0) + i.get('spill_ld', 0)} | {c['hmma']} | "
                     f"{c['ldg128']} | {c['stg128']} | {c['lds128']} | {c['ldsm']} | {c['ldgsts']} |")
    table = "\n".join(lines)
    print(table)
    if a.out:
        Path(a.out).write_text(table + "\n")
    for p in problems:
        print(f"kernel_report: {p}", file=sys.stderr)
    if a.check:
        needed = [fname for fname, _ in NEEDS_TENSOR_CORES if any(f.name == fname for f in files)]
        for fname, pat in NEEDS_TENSOR_CORES:
            if fname in needed and not any(r[0] == fname and re.search(pat, r[1]) for r in rows):
                problems.append(f"{fname}: no kernel matching /{pat}/ (renamed? update NEEDS_TENSOR_CORES)")
                print(f"kernel_report: {problems[-1]}", file=sys.stderr)
        if problems:
            sys.exit(1)
        print(f"kernel_report: {len(rows)} kernel builds checked: tensor cores present, no spills", file=sys.stderr)


if __name__ == "__main__":
    main()
