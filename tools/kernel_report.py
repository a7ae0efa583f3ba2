#!/usr/bin/env python3
"""Static report of every CUDA kernel, no GPU needed (tools/kernel_report.sh runs this).

For each kernels/*.cu and each architecture: nvcc compiles a cubin with `-Xptxas -v` (registers,
static shared memory, stack frame, spill stores/loads per kernel); cuobjdump disassembles it
(SASS instruction counts: HMMA (mma.sync) and HGMMA (wgmma) tensor-core instructions, 128-bit
global/shared loads and stores, LDSM (ldmatrix), LDGSTS (cp.async), UTMALDG / UTMASTG (TMA tensor
loads / stores), SYNCS (mbarrier operations)) and dumps its ELF (EIATTR_MAX_THREADS, i.e. the
kernel's __launch_bounds__). With the block size and dynamic shared memory of each launch
(LAUNCHES below, mirroring the launchers in kernels/*.cu) it computes the theoretical occupancy
by the CUDA occupancy calculator's rules (ARCH_LIMITS below).

  --out FILE        write the markdown report (docs/kernels.md is this output, committed)
  --check           absolute checks: tensor cores in the GEMM/attention kernels, no spills,
                    every kernel has a launch configuration and can launch; the Hopper GEMM
                    (matmul_sm90.cu) and attention (attention_sm90*.cu) on sm_90*: HGMMA,
                    UTMALDG (TMA loads) and SYNCS present
  --check REPORT    the absolute checks, then compare with a committed report: fail on a
                    regression (new spill/stack, lost HMMA/LDSM/LDGSTS/128-bit accesses,
                    lower occupancy, a register increase crossing an occupancy step)
  --self-test       feed synthetic regressions to the comparison and the occupancy calculator
                    and expect the right verdicts (no nvcc needed)
"""
import argparse
import concurrent.futures
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = "docs/kernels.md"
REGENERATE = f"tools/kernel_report.sh --out {DOC}"

# ---------------------------------------------------------------------------------------------
# Per-SM limits used by the occupancy calculation.
#
# From the CUDA C++ Programming Guide (legacy edition, section 20 "Compute Capabilities",
# Table 27 "Technical Specifications per Compute Capability", columns 8.0 and 9.0; KB = 1024 B):
#   resident blocks per SM 32, resident warps per SM 64, 32-bit registers per SM 64 K,
#   registers per thread 255, shared memory per SM 164 KB (8.0) / 228 KB (9.0), per block
#   163 KB / 227 KB. Sections 20.7.3 and 20.8.3: the shared-memory capacity (carveout) can be
#   set to 0, 8, 16, 32, 64, 100, 132, 164 KB (8.0) and additionally 196, 228 KB (9.0); a
#   percentage carveout rounds up to the next supported capacity; "the 1 KB of shared memory
#   not made available to a thread block is reserved for system use" (per block).
# From the toolkit's occupancy calculator, /usr/local/cuda/include/cuda_occupancy.h (the rules
# cudaOccupancyMaxActiveBlocksPerMultiprocessor applies; --self-test cross-checks this file
# against it when a C++ compiler is found): registers are allocated per warp in units of 256,
# in 4 SM sub-partitions (a warp's registers come from one sub-partition of 16 K); shared
# memory is allocated per block in units of 128 bytes including the 1 KB reserve; when no
# carveout is configured the full capacity is assumed; a carveout smaller than one block's
# need is overridden (the driver picks the next capacity that fits one block).
# Compute capability 8.6 (GA10x; 8.9 differs only in 24 resident blocks per SM): the same guide's
# column 8.6 and section 20.7.3 / the Ampere tuning guide: resident blocks per SM 16, resident
# warps 48 (1536 threads), 64 K registers, 255 per thread; shared memory per SM 100 KB, per block
# 99 KB (101376 bytes, opt-in), carveouts 0, 8, 16, 32, 64, 100 KB. cuda_occupancy.h agrees
# (cudaOccMaxBlocksPerMultiprocessor: 16 for 8.x other than 8.0, 8.7 and 8.9; its carveout list
# for 8.x other than 8.0 / 8.7 ends at 100 KB); --self-test cross-checks all three architectures.
# sm_90a is sm_90 with the architecture-specific instructions: same limits.
# ---------------------------------------------------------------------------------------------
KIB = 1024


@dataclasses.dataclass(frozen=True)
class ArchLimits:
    name: str
    max_blocks: int = 32
    max_warps: int = 64
    regs_per_sm: int = 64 * KIB
    max_regs_per_thread: int = 255
    reg_unit_per_warp: int = 256
    sub_partitions: int = 4
    max_threads_per_block: int = 1024
    smem_capacities_kib: tuple = ()  # supported carveouts; the last is the maximum per SM
    smem_per_block_max: int = 0      # usable by one block (excluding the reserve)
    smem_reserved_per_block: int = KIB
    smem_unit: int = 128


ARCH_LIMITS = {
    "sm_80": ArchLimits("8.0", smem_capacities_kib=(0, 8, 16, 32, 64, 100, 132, 164), smem_per_block_max=163 * KIB),
    "sm_86": ArchLimits("8.6", max_blocks=16, max_warps=48, smem_capacities_kib=(0, 8, 16, 32, 64, 100),
                        smem_per_block_max=99 * KIB),
    "sm_90": ArchLimits("9.0", smem_capacities_kib=(0, 8, 16, 32, 64, 100, 132, 164, 196, 228),
                        smem_per_block_max=227 * KIB),
}


def arch_limits(arch):
    base = re.sub(r"[af]$", "", arch)  # sm_90a -> sm_90
    if base not in ARCH_LIMITS:
        sys.exit(f"kernel_report: no occupancy limits for {arch} (known: {', '.join(ARCH_LIMITS)}); add them to "
                 f"ARCH_LIMITS in tools/kernel_report.py from the CUDA C++ Programming Guide's compute capability table")
    return ARCH_LIMITS[base]


# ---------------------------------------------------------------------------------------------
# Launch configurations: block size and dynamic shared memory of every kernel, as its launcher
# in kernels/*.cu computes them. A kernel with __launch_bounds__ takes its block size from the
# cubin (EIATTR_MAX_THREADS); an entry here then only supplies the dynamic shared memory (and,
# if it also gives a block, the two must agree). Every other kernel needs an entry with a block.
# Launches whose size depends on the shape are given for the reference shape, GPT-2 124M
# (C = 768, vocab V = 50257 padded to Vp = 50304, head dim 64, 16 parameter tensors), and are
# marked with * in the report. The first matching entry (file, regex on the short name) wins.
# ---------------------------------------------------------------------------------------------
REF_C, REF_V, REF_VP, REF_PARAM_TENSORS = 768, 50257, 50304, 16


def ceil_div(a, b):
    return -(-a // b)


def clamp(x, lo, hi):
    return max(lo, min(hi, x))


def gemm_smem(m):
    """kernels/matmul.cu gemm_smem_bytes<Tile<BM, BN, WM, WN, STAGES>, A_K, B_K>()."""
    bm, bn, stages = int(m["bm"]), int(m["bn"]), int(m["stages"])
    bk, pad = 32, 8

    def stage(mn, kmajor):  # Operand<MN, KMAJOR>::STAGE, bf16 elements
        return mn * (bk + pad) if kmajor else bk * (mn + pad)
    return stages * (stage(bm, m["ak"] == "true") + stage(bn, m["bk"] == "true")) * 2


def attention_dkv_smem(m):
    """kernels/attention.cu dkv_smem_bytes<HD, MI, BQ>(): K, V (64 MI rows) + 2 stages of Q, dO (BQ rows)
    + 2 stages of lse, D (BQ floats)."""
    hd, mi, bq = int(m["hd"]), int(m["mi"]), int(m["bq"])
    return (2 * 64 * mi + 4 * bq) * (hd + 8) * 2 + 4 * bq * 4


def attention_dq_smem(m):
    """kernels/attention.cu dq_smem_bytes<HD, MI, BK>(): Q, dO (64 MI rows) + 2 stages of K, V (BK rows)."""
    hd, mi, bk = int(m["hd"]), int(m["mi"]), int(m["bk"])
    return (2 * 64 * mi + 4 * bk) * (hd + 8) * 2


def layernorm_bwd_warps(c):
    """kernels/layernorm.cu bwd_warps(C): 2C floats per warp within the 48 KiB default budget."""
    return min(4, (48 * KIB) // (2 * c * 4))


@dataclasses.dataclass(frozen=True)
class Launch:
    file: str
    pattern: str
    block: object = None   # int, or a function of the regex match; None: from __launch_bounds__
    dyn_smem: object = 0   # bytes, or a function of the regex match
    shape_dependent: bool = False  # computed for the reference shape (GPT-2 124M)

    def resolve(self, field, match):
        v = getattr(self, field)
        return v(match) if callable(v) else v


LAUNCHES = [
    # matmul.cu: launch_tc -> dim3(T::THREADS), gemm_smem_bytes<T, A_K, B_K>(); the rest 256 threads.
    Launch("matmul.cu", r"^gemm_tc_kernel<Tile<(?P<bm>\d+), (?P<bn>\d+), (?P<wm>\d+), (?P<wn>\d+), (?P<stages>\d+)>, "
           r"(?P<ak>true|false), (?P<bk>true|false)>$",
           block=lambda m: int(m["wm"]) * int(m["wn"]) * 32, dyn_smem=gemm_smem),
    # matmul_sm90.cu: __launch_bounds__(384); Config<BN, STAGES>::SMEM = STAGES x (128 + BN) x 64
    # bf16 + 1 KiB alignment slack.
    Launch("matmul_sm90.cu", r"^sm90::gemm_ws_kernel<sm90::Config<(?P<bn>\d+), (?P<stages>\d+)>, (true|false), "
           r"(true|false)>$",
           dyn_smem=lambda m: int(m["stages"]) * (128 + int(m["bn"])) * 64 * 2 + 1024),
    # attention_sm90.cu: __launch_bounds__(384); smem_bytes<HD>() = (1 Q + 2 K + 2 V tiles of 128 rows
    # x HD bf16) + 1 KiB alignment slack.
    Launch("attention_sm90.cu", r"^sm90::attention_fwd_ws_kernel<(?P<hd>\d+)>$",
           dyn_smem=lambda m: 5 * 128 * int(m["hd"]) * 2 + 1024),
    # attention_sm90_bwd.cu: __launch_bounds__(384); bwd_smem_bytes<HD>() = HD/64 x (K, V boxes of
    # 16 KiB + 2 stages x (Q, dO boxes of 8 KiB)) + 2 dS^T tiles of 8 KiB + 1 KiB slack. Its dQ
    # conversion kernel: __launch_bounds__(256), no dynamic shared memory (its row-dot step is
    # attention.cu's attention_backward_d_kernel).
    Launch("attention_sm90_bwd.cu", r"^sm90::attention_bwd_ws_kernel<(?P<hd>\d+), (true|false)>$",
           dyn_smem=lambda m: int(m["hd"]) // 64 * (2 * 16384 + 4 * 8192) + 2 * 8192 + 1024),
    # matmul_skinny.cu: kThreads = 128, static shared memory only.
    Launch("matmul_skinny.cu", r"^skinny::skinny_gemm_kernel<\d+, \d+>$", block=128),
    # attention.cu: kThreads = 128, smem from forward_/dkv_/dq_smem_bytes<HD, MI, ...>(); kTile = 64;
    # the forward's query tile 64 MI rows (forward_smem_bytes<HD, MI>: Q + 2 stages of K and of V);
    # the backward's <HD, MI, BQ or BK, REGS> tiles (BwdTiles): 64 MI rows per block, BQ / BK per step.
    Launch("attention.cu", r"^attention_forward_kernel<(?P<hd>\d+), (?P<mi>\d+)>$",
           dyn_smem=lambda m: 64 * (int(m["mi"]) + 4) * (int(m["hd"]) + 8) * 2),
    Launch("attention.cu", r"^attention_backward_dkv_kernel<(?P<hd>\d+), (?P<mi>\d+), (?P<bq>\d+), (true|false)>$",
           dyn_smem=attention_dkv_smem),
    Launch("attention.cu", r"^attention_backward_dq_kernel<(?P<hd>\d+), (?P<mi>\d+), (?P<bk>\d+), (true|false)>$",
           dyn_smem=attention_dq_smem),
    Launch("attention.cu", r"^attention_kv_append_kernel$", block=256),
    # attention_decode.cu: partial and combine kernels __launch_bounds__(128); the append kernel 256.
    Launch("attention_decode.cu", r"^decode_append_kernel$", block=256),
    Launch("attention_decode.cu", r"^decode_(partial|combine)_kernel<\d+>$"),
    # attention_generic.cu: 32 * kWarps (4) threads; the append kernels 256.
    Launch("attention_generic.cu", r"^generic_kv_append_kernel$", block=256),
    Launch("attention_generic.cu", r"^generic_(forward|d|dq|dkv|kv)_kernel$", block=128),
    # classifier.cu: threads = clamp(ceil32(ceil(work / 4)), 64, 1024), work = Vp / 8 (vec) or Vp.
    Launch("classifier.cu", r"^classifier_kernel<(?P<vec>true|false)>$", shape_dependent=True,
           block=lambda m: clamp(ceil_div(ceil_div(REF_VP // 8 if m["vec"] == "true" else REF_VP, 4), 32) * 32,
                                 64, 1024)),
    # elementwise.cu: kThreads = 256.
    Launch("elementwise.cu", r"^(map_kernel<.*>|f32_to_bf16_kernel|bf16_to_f32_kernel)$", block=256),
    # embedding.cu: kThreads = 256; backward wte: tb = min(256, ceil32(C / 8 or C)).
    Launch("embedding.cu", r"^encoder_backward_wte_kernel<(?P<v>\d+)>$", shape_dependent=True,
           block=lambda m: min(256, ceil_div(REF_C // int(m["v"]), 32) * 32)),
    Launch("embedding.cu", r"^encoder_(forward|backward_wpe)_kernel<\d+>$", block=256),
    # layernorm.cu: forward 32 * kFwdWarps (4); backward 32 * bwd_warps(C) threads with
    # bwd_warps(C) * 2C floats of dynamic shared memory; param reduce 32 * kReduceSlices (8).
    Launch("layernorm.cu", r"^layernorm_forward_kernel<\d+, (true|false)>$", block=128),
    Launch("layernorm.cu", r"^layernorm_backward_kernel<\d+>$", shape_dependent=True,
           block=32 * layernorm_bwd_warps(REF_C), dyn_smem=layernorm_bwd_warps(REF_C) * 2 * REF_C * 4),
    # backward register path: 32 * kBwdRegWarps (8) threads, one 2C-float shared row.
    Launch("layernorm.cu", r"^layernorm_backward_reg_kernel<\d+, \d+>$", shape_dependent=True,
           block=256, dyn_smem=2 * REF_C * 4),
    Launch("layernorm.cu", r"^layernorm_param_reduce_kernel$", block=256),
    # optimizer.cu: kAdamThreads = kSumThreads = 256; adamw: one size_t per parameter segment.
    Launch("optimizer.cu", r"^adamw_kernel$", block=256, dyn_smem=REF_PARAM_TENSORS * 8, shape_dependent=True),
    Launch("optimizer.cu", r"^(round_weights_kernel|sum_squares_partial_kernel<(true|false)>|sum_squares_final_kernel)$",
           block=256),
    # sampling.cu: sample: clamp(ceil32(ceil(V / 8)), 32, 512); gather_logprobs like classifier
    # with work = ceil(V / 8) (vec) or V.
    Launch("sampling.cu", r"^sample_kernel$", shape_dependent=True,
           block=clamp(ceil_div(ceil_div(REF_V, 8), 32) * 32, 32, 512)),
    Launch("sampling.cu", r"^gather_logprobs_kernel<(?P<vec>true|false)>$", shape_dependent=True,
           block=lambda m: clamp(ceil_div(ceil_div(ceil_div(REF_V, 8) if m["vec"] == "true" else REF_V, 4), 32) * 32,
                                 64, 1024)),
]

# Kernels that must run on tensor cores: (file, regex on the short kernel name).
NEEDS_TENSOR_CORES = [
    ("matmul.cu", r"^gemm_tc_kernel"),
    ("matmul_skinny.cu", r"^skinny::skinny_gemm_kernel"),
    ("attention.cu", r"^attention_(forward|backward_dkv|backward_dq)_kernel"),
]

# The Hopper kernels (file, regex on the short kernel name) that must, in their sm_90* builds, issue
# wgmma (HGMMA), load through the Tensor Memory Accelerator (UTMALDG) and wait on mbarriers (SYNCS).
# Their files' other builds are stubs that trap (the launcher never picks them there): not reported.
NEEDS_HOPPER = [
    ("matmul_sm90.cu", r"^sm90::gemm_ws_kernel"),
    ("attention_sm90.cu", r"^sm90::attention_fwd_ws_kernel"),
    ("attention_sm90_bwd.cu", r"^sm90::attention_bwd_ws_kernel"),
]
HOPPER_INSTRS = [("hgmma", "HGMMA (wgmma)"), ("utmaldg", "UTMALDG (TMA load)"), ("syncs", "SYNCS (mbarrier)")]

SASS_COUNTS = {
    "hmma": re.compile(r"\bHMMA\b"),
    "hgmma": re.compile(r"\bHGMMA\b"),
    "utmaldg": re.compile(r"\bUTMALDG\b"),
    "utmastg": re.compile(r"\bUTMASTG\b"),
    "syncs": re.compile(r"\bSYNCS\b"),
    "ldg128": re.compile(r"\bLDG\.E[.\w]*\.128\b"),
    "stg128": re.compile(r"\bSTG\.E[.\w]*\.128\b"),
    "lds128": re.compile(r"\bLDS\.128\b|\bLDS\.U\.128\b"),
    "ldsm": re.compile(r"\bLDSM\b"),
    "ldgsts": re.compile(r"\bLDGSTS\b"),
}

# ---------------------------------------------------------------------------------------------
# Occupancy
# ---------------------------------------------------------------------------------------------
LIMITERS = ("regs", "smem", "warps", "blocks")


@dataclasses.dataclass(frozen=True)
class Occupancy:
    blocks: int      # resident blocks per SM
    warps: int       # resident warps per SM
    percent: int     # warps / max warps, rounded down
    limiter: str     # the binding limit(s), '+'-joined when tied, or why it cannot launch


def smem_capacity(lim, carveout_pct, need):
    """Shared memory per SM for a block allocating `need` bytes, under a carveout preference."""
    caps = [c * KIB for c in lim.smem_capacities_kib]
    want = caps[-1] if carveout_pct is None else carveout_pct * caps[-1] // 100
    pick = next(c for c in caps if c >= want)  # a percentage rounds up to a supported capacity
    if pick < need:  # a hint too small for one block is overridden
        pick = next((c for c in caps if c >= need), caps[-1])
    return pick


def regs_blocks(lim, regs, threads):
    """Blocks per SM the register file allows (0: the block cannot launch)."""
    warps = ceil_div(threads, 32)
    per_warp = ceil_div(regs * 32, lim.reg_unit_per_warp) * lim.reg_unit_per_warp
    if regs > lim.max_regs_per_thread or per_warp * ceil_div(warps, lim.sub_partitions) * lim.sub_partitions > lim.regs_per_sm:
        return 0
    if per_warp == 0:
        return lim.max_blocks
    warps_per_sub = (lim.regs_per_sm // lim.sub_partitions) // per_warp
    return warps_per_sub * lim.sub_partitions // warps


def occupancy(lim, regs, threads, smem, carveout_pct=None):
    """Theoretical occupancy of one kernel launch (static + dynamic shared memory `smem`)."""
    if threads < 1 or threads > lim.max_threads_per_block:
        return Occupancy(0, 0, 0, f"block>{lim.max_threads_per_block}")
    if smem > lim.smem_per_block_max:
        return Occupancy(0, 0, 0, f"smem>{lim.smem_per_block_max // KIB}KiB")
    warps = ceil_div(threads, 32)
    need = ceil_div(smem + lim.smem_reserved_per_block, lim.smem_unit) * lim.smem_unit
    by = {
        "regs": regs_blocks(lim, regs, threads),
        "smem": smem_capacity(lim, carveout_pct, need) // need if need else lim.max_blocks,
        "warps": lim.max_warps // warps,
        "blocks": lim.max_blocks,
    }
    if by["regs"] == 0:
        return Occupancy(0, 0, 0, "regs>file")
    blocks = min(by.values())
    limiter = "+".join(k for k in LIMITERS if by[k] == blocks)
    return Occupancy(blocks, blocks * warps, blocks * warps * 100 // lim.max_warps, limiter)


# ---------------------------------------------------------------------------------------------
# Compiling and reading the cubins
# ---------------------------------------------------------------------------------------------
def find_tool(name, extra):
    for cand in extra:
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return shutil.which(name)


def run_tool(cmd, what, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"kernel_report: {what} failed:\n$ {' '.join(cmd)}\n{r.stderr}")
    return r


def demangle(names):
    if not names:
        return {}
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout
    return dict(zip(names, out.splitlines()))


def strip_params(s):
    """Drops the parameter list: the last balanced (...)."""
    if s.endswith(")"):
        depth = 0
        for i in range(len(s) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(s[i], 0)
            if depth == 0:
                return s[:i]
    return s


def short_name(pretty, keep_params=False):
    """'void ouro::kernels::(anonymous namespace)::k<64>(float*, int)' -> 'k<64>'."""
    s = pretty.replace("(anonymous namespace)::", "").replace("ouro::kernels::", "")
    s = re.sub(r"^void ", "", s)
    return s if keep_params else strip_params(s)


def compile_one(nvcc, src, arch, tmp):
    cubin = Path(tmp) / f"{src.stem}_{arch}.cubin"
    cmd = [nvcc, "-std=c++20", "--expt-relaxed-constexpr", "-O3", f"-arch={arch}", "-cubin",
           "-Xptxas", "-v", f"-I{ROOT / 'include'}", f"-I{ROOT}", str(src), "-o", str(cubin)]
    r = run_tool(cmd, f"nvcc on {src} for {arch}")
    return parse_ptxas(r.stderr), cubin


def parse_ptxas(text):
    """kernel -> {regs, smem, stack, spill} from ptxas -v output."""
    info, cur = {}, None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            cur = m.group(1)
            info[cur] = {"regs": 0, "smem": 0, "stack": 0, "spill": 0}
            continue
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            cur = m.group(1) if m.group(1) in info else None
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            info[cur].update(stack=int(m.group(1)), spill=int(m.group(2)) + int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            info[cur]["regs"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            info[cur]["smem"] = int(s.group(1)) if s else 0
    return info


def cuobjdump_env(cuobjdump):
    env = dict(os.environ)
    env["PATH"] = str(Path(cuobjdump).parent) + os.pathsep + env.get("PATH", "")  # its nvdisasm
    return env


def sass_counts(cuobjdump, cubin):
    """kernel -> instruction counts from the cubin's SASS."""
    r = run_tool([cuobjdump, "-sass", str(cubin)], f"cuobjdump -sass on {cubin}", cuobjdump_env(cuobjdump))
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


def launch_bounds(cuobjdump, cubin):
    """kernel -> max threads per block from __launch_bounds__ (EIATTR_MAX_THREADS x*y*z)."""
    r = run_tool([cuobjdump, "-elf", str(cubin)], f"cuobjdump -elf on {cubin}", cuobjdump_env(cuobjdump))
    bounds, cur, want = {}, None, False
    for line in r.stdout.splitlines():
        if line.startswith(".nv.info."):
            cur, want = line[len(".nv.info."):].strip(), False
        elif line.startswith(".") or not line.strip():
            cur = None if line.startswith(".") else cur
        elif cur and "Attribute:" in line:
            want = line.split()[-1] == "EIATTR_MAX_THREADS"
        elif cur and want and "Value:" in line:
            dims = [int(v, 16) for v in line.split("Value:")[1].split()]
            n = 1
            for d in dims:
                n *= d
            bounds[cur] = n
            want = False
    return bounds


def nvcc_version(nvcc):
    out = run_tool([nvcc, "--version"], "nvcc --version").stdout
    m = re.search(r"release [^\n]*", out)
    return m.group(0).strip() if m else out.strip().splitlines()[-1]


# ---------------------------------------------------------------------------------------------
# The report: one row per (architecture, file, kernel)
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Row:
    arch: str
    file: str
    kernel: str
    regs: int = 0
    smem_static: int = 0
    smem_dyn: int = 0
    stack: int = 0
    spill: int = 0
    block: int = 0             # 0: unknown (no __launch_bounds__ and no LAUNCHES entry)
    shape_dependent: bool = False
    blocks_sm: int = 0
    warps_sm: int = 0
    occupancy: int = 0         # percent
    limiter: str = "-"
    hmma: int = 0
    ldg128: int = 0
    stg128: int = 0
    lds128: int = 0
    ldsm: int = 0
    ldgsts: int = 0
    hgmma: int = 0
    utmaldg: int = 0
    utmastg: int = 0
    syncs: int = 0

    @property
    def key(self):
        return (self.arch, self.file, self.kernel)


# (header, field) in table order; the parser maps headers back to fields.
COLUMNS = [("file", "file"), ("kernel", "kernel"), ("regs", "regs"), ("smem static B", "smem_static"),
           ("smem dyn B", "smem_dyn"), ("stack B", "stack"), ("spill B", "spill"), ("block", "block"),
           ("blocks/SM", "blocks_sm"), ("warps/SM", "warps_sm"), ("occupancy", "occupancy"), ("limiter", "limiter"),
           ("HMMA", "hmma"), ("LDG.128", "ldg128"), ("STG.128", "stg128"), ("LDS.128", "lds128"), ("LDSM", "ldsm"),
           ("LDGSTS", "ldgsts"), ("HGMMA", "hgmma"), ("UTMALDG", "utmaldg"), ("UTMASTG", "utmastg"),
           ("SYNCS", "syncs")]
TEXT_FIELDS = {"file", "kernel", "limiter"}
INSTR_FIELDS = [("hmma", "HMMA"), ("ldsm", "LDSM"), ("ldgsts", "LDGSTS"), ("ldg128", "LDG.128"),
                ("stg128", "STG.128"), ("lds128", "LDS.128"), ("hgmma", "HGMMA"), ("utmaldg", "UTMALDG"),
                ("utmastg", "UTMASTG"), ("syncs", "SYNCS")]


def cell(row, field):
    v = getattr(row, field)
    if field == "kernel":
        return f"`{v}`"
    if field == "block":
        return "?" if not v else f"{v}*" if row.shape_dependent else str(v)
    if field == "occupancy":
        return f"{v}%"
    return str(v)


def find_launch(fname, kernel):
    for launch in LAUNCHES:
        if launch.file == fname:
            m = re.search(launch.pattern, kernel)
            if m:
                return launch, m
    return None, None


def make_row(arch, fname, kernel, info, counts, bound, carveout, problems):
    """One report row; launch-configuration problems are appended to `problems`."""
    row = Row(arch, fname, kernel, regs=info.get("regs", 0), smem_static=info.get("smem", 0),
              stack=info.get("stack", 0), spill=info.get("spill", 0), **counts)
    launch, m = find_launch(fname, kernel)
    table_block = launch.resolve("block", m) if launch else None
    if launch:
        row.smem_dyn = launch.resolve("dyn_smem", m)
        row.shape_dependent = launch.shape_dependent
    if bound and table_block and bound != table_block:
        problems.append(f"{fname} {kernel} [{arch}]: __launch_bounds__ says {bound} threads, LAUNCHES in "
                        f"tools/kernel_report.py says {table_block}: make them agree")
    row.block = bound or table_block or 0
    if not row.block:
        problems.append(f"{fname} {kernel} [{arch}]: no block size: give the kernel __launch_bounds__ or add a "
                        f"Launch(\"{fname}\", r\"^...$\", block=..., dyn_smem=...) entry to LAUNCHES in "
                        f"tools/kernel_report.py mirroring its launcher in kernels/{fname}")
        return row
    occ = occupancy(arch_limits(arch), row.regs, row.block, row.smem_static + row.smem_dyn, carveout)
    row.blocks_sm, row.warps_sm, row.occupancy, row.limiter = occ.blocks, occ.warps, occ.percent, occ.limiter
    if occ.blocks == 0:
        problems.append(f"{fname} {kernel} [{arch}]: cannot launch ({occ.limiter}) with {row.block} threads, "
                        f"{row.regs} registers, {row.smem_static + row.smem_dyn} bytes of shared memory")
    return row


def absolute_problems(rows, files):
    """Spills, tensor-core kernels without HMMA (or missing altogether), and Hopper kernels whose
    sm_90* build lacks wgmma, TMA loads or mbarrier waits."""
    problems = []
    for r in rows:
        if r.spill:
            problems.append(f"{r.file} {r.kernel} [{r.arch}]: {r.spill} bytes of spills")
        for fname, pat in NEEDS_TENSOR_CORES:
            if r.file == fname and re.search(pat, r.kernel) and r.hmma + r.hgmma == 0:
                problems.append(f"{r.file} {r.kernel} [{r.arch}]: no HMMA/HGMMA instruction")
        for fname, pat in NEEDS_HOPPER:
            if r.file == fname and re.search(pat, r.kernel) and r.arch.startswith("sm_90"):
                for field, label in HOPPER_INSTRS:
                    if getattr(r, field) == 0:
                        problems.append(f"{r.file} {r.kernel} [{r.arch}]: no {label} instruction")
    names = {f.name for f in files}
    for fname, pat in NEEDS_TENSOR_CORES:
        if fname in names and not any(r.file == fname and re.search(pat, r.kernel) for r in rows):
            problems.append(f"{fname}: no kernel matching /{pat}/ (renamed? update NEEDS_TENSOR_CORES)")
    for fname, pat in NEEDS_HOPPER:
        hopper_archs = {r.arch for r in rows if r.arch.startswith("sm_90")}
        for arch in sorted(hopper_archs):
            if fname in names and not any(r.file == fname and r.arch == arch and re.search(pat, r.kernel) for r in rows):
                problems.append(f"{fname} [{arch}]: no kernel matching /{pat}/ (renamed? update NEEDS_HOPPER)")
    return problems


def build_rows(nvcc, cuobjdump, files, archs, jobs, carveout):
    rows, problems = [], []
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        jobs_ = {(f, arch): pool.submit(compile_one, nvcc, f, arch, tmp) for f in files for arch in archs}
        for (f, arch), job in jobs_.items():
            info, cubin = job.result()
            counts = sass_counts(cuobjdump, cubin)
            bounds = launch_bounds(cuobjdump, cubin)
            mangled = sorted(set(info) | set(counts))
            pretty = demangle(mangled)
            shorts = {n: short_name(pretty.get(n, n)) for n in mangled}
            dup = {s for s in shorts.values() if list(shorts.values()).count(s) > 1}
            if not arch.startswith("sm_90") and any(f.name == fname for fname, _ in NEEDS_HOPPER):
                continue  # a Hopper-only file: its other builds are never launched
            for n in mangled:  # overloads that differ only in parameters keep their parameter list
                name = short_name(pretty.get(n, n), keep_params=shorts[n] in dup)
                rows.append(make_row(arch, f.name, name, info.get(n, {}), counts.get(n, {k: 0 for k in SASS_COUNTS}),
                                     bounds.get(n), carveout, problems))
    rows.sort(key=lambda r: (r.arch, r.file, r.kernel))
    return rows, problems


# ---------------------------------------------------------------------------------------------
# Markdown: render and parse back
# ---------------------------------------------------------------------------------------------
def limits_table():
    lines = ["| arch | blocks/SM | warps/SM | registers/SM | registers/thread | register unit | shared memory/SM "
             "(carveouts) | shared memory/block | reserved/block |",
             "|---|---:|---:|---:|---:|---|---|---:|---:|"]
    for arch, lim in ARCH_LIMITS.items():
        caps = ", ".join(str(c) for c in lim.smem_capacities_kib)
        lines.append(f"| {arch} (CC {lim.name}) | {lim.max_blocks} | {lim.max_warps} | {lim.regs_per_sm} | "
                     f"{lim.max_regs_per_thread} | {lim.reg_unit_per_warp} per warp, {lim.sub_partitions} "
                     f"sub-partitions | {caps} KiB | {lim.smem_per_block_max // KIB} KiB | "
                     f"{lim.smem_reserved_per_block} B |")
    return lines


def render(rows, archs, nvcc_ver, carveout):
    carve = "none configured (the kernels set none): full capacity" if carveout is None else f"{carveout}%"
    out = [
        "# Kernel report",
        "",
        f"Generated by `{REGENERATE}`; do not edit by hand. Static: nothing runs on a GPU.",
        f"CI (ctest `kernel_report`: `tools/kernel_report.sh --check {DOC}`) regenerates it and fails on a",
        "regression against this file: a new spill or stack use, a kernel losing its HMMA / LDSM / LDGSTS /",
        "128-bit instructions, lower occupancy, or a register increase that crosses an occupancy step.",
        "After an intended change, regenerate this file and commit it with the change.",
        "",
        f"- compiler: nvcc {nvcc_ver}, `-O3 -std=c++20 -cubin -Xptxas -v -arch=<arch>`, one cubin per kernels/*.cu",
        "- regs, smem static, stack, spill (stores + loads): `ptxas -v`; instruction counts: `cuobjdump -sass`",
        "  (HMMA: mma.sync; HGMMA: wgmma; LDGSTS: cp.async; LDSM: ldmatrix; UTMALDG / UTMASTG: TMA tensor",
        "  load / store; SYNCS: mbarrier operations). The Hopper GEMM (matmul_sm90.cu) and attention",
        "  (attention_sm90.cu, attention_sm90_bwd.cu) must show HGMMA, UTMALDG and SYNCS in their sm_90a builds",
        "  (their sm_80 builds are stubs that trap, never launched: not listed)",
        "- block: `__launch_bounds__` from the cubin (EIATTR_MAX_THREADS), else the launcher's block size",
        "  (LAUNCHES in tools/kernel_report.py, which mirrors kernels/*.cu); `*` = depends on the launch shape,",
        f"  given for GPT-2 124M (C {REF_C}, V {REF_V}, Vp {REF_VP}, {REF_PARAM_TENSORS} parameter tensors);",
        "  smem dyn: the launcher's dynamic shared memory, same source",
        "- occupancy: the CUDA occupancy calculator's rules (cuda_occupancy.h) with the limits below, from the",
        "  CUDA C++ Programming Guide's compute capability table (Table 27, sections 20.7.3 and 20.8.3);",
        f"  shared-memory carveout: {carve}. limiter: the resource that binds (ties joined by +).",
        "",
    ]
    out += limits_table()
    for arch in archs:
        out += ["", f"## {arch}", "",
                "| " + " | ".join(h for h, _ in COLUMNS) + " |",
                "|" + "|".join("---" if f in TEXT_FIELDS else "---:" for _, f in COLUMNS) + "|"]
        out += ["| " + " | ".join(cell(r, f) for _, f in COLUMNS) + " |" for r in rows if r.arch == arch]
    return "\n".join(out) + "\n"


class ReportError(Exception):
    pass


def parse_report(text, path):
    """Rows of a rendered report, and its nvcc line. Raises ReportError naming path:line."""
    rows, arch, header, nvcc_ver = [], None, None, None
    for no, line in enumerate(text.splitlines(), 1):
        m = re.match(r"- compiler: nvcc (.*?), `", line)
        if m:
            nvcc_ver = m.group(1)
        m = re.match(r"## (sm_\w+)\s*$", line)
        if m:
            arch, header = m.group(1), None
            continue
        if arch is None or not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            known = dict(COLUMNS)
            missing = [h for h, _ in COLUMNS if h not in cells]
            if missing:
                raise ReportError(f"{path}:{no}: table header lacks column(s) {', '.join(missing)}")
            header = [known.get(c) for c in cells]
            continue
        if set(line.replace("|", "").strip()) <= set("-: "):
            continue  # the alignment row
        if len(cells) != len(header):
            raise ReportError(f"{path}:{no}: {len(cells)} cells, the header has {len(header)}")
        row = Row(arch, "", "")
        for field, value in zip(header, cells):
            if field is None:
                continue
            if field in TEXT_FIELDS:
                setattr(row, field, value.strip("`"))
                continue
            if field == "block":
                row.shape_dependent = value.endswith("*")
                value = "0" if value == "?" else value.rstrip("*")
            if field == "occupancy":
                value = value.rstrip("%")
            try:
                setattr(row, field, int(value))
            except ValueError:
                raise ReportError(f"{path}:{no}: column '{dict((f, h) for h, f in COLUMNS)[field]}' "
                                  f"is not a number: '{value}'") from None
        rows.append(row)
    if not rows:
        raise ReportError(f"{path}: no kernel table found (expected '## sm_XX' sections with tables)")
    return rows, nvcc_ver


# ---------------------------------------------------------------------------------------------
# Comparison with the committed report
# ---------------------------------------------------------------------------------------------
def compare(old_rows, new_rows):
    """(regressions, notes) between two sets of rows."""
    regressions, notes = [], []
    old = {r.key: r for r in old_rows}
    new = {r.key: r for r in new_rows}
    for key in sorted(set(old) - set(new)):
        notes.append(f"{key[1]} {key[2]} [{key[0]}]: no longer built (removed or renamed)")
    for key in sorted(set(new) - set(old)):
        r = new[key]
        notes.append(f"{r.file} {r.kernel} [{r.arch}]: new kernel ({r.regs} regs, {r.occupancy}% occupancy, "
                     f"{r.spill} B spills)")
    for key in sorted(set(old) & set(new)):
        o, n = old[key], new[key]
        where = f"{n.file} {n.kernel} [{n.arch}]"
        bad, info = [], []
        if n.spill > o.spill:
            bad.append(f"spill bytes {o.spill} -> {n.spill}" + (" (new spill)" if o.spill == 0 else ""))
        if n.stack > o.stack:
            bad.append(f"stack bytes {o.stack} -> {n.stack}" + (" (new stack use)" if o.stack == 0 else ""))
        for field, label in INSTR_FIELDS:
            ov, nv = getattr(o, field), getattr(n, field)
            if ov > 0 and nv == 0:
                bad.append(f"{label} {ov} -> 0 (lost)")
            elif ov != nv:
                info.append(f"{label} {ov} -> {nv}")
        if n.occupancy < o.occupancy:
            bad.append(f"occupancy {o.occupancy}% -> {n.occupancy}% (limiter {o.limiter} -> {n.limiter})")
        elif n.regs > o.regs and n.block and n.block == o.block:
            lim = arch_limits(n.arch)
            ob, nb = regs_blocks(lim, o.regs, o.block), regs_blocks(lim, n.regs, n.block)
            if nb < ob:
                bad.append(f"regs {o.regs} -> {n.regs} cross an occupancy step (the register file fits {ob} -> {nb} "
                           f"blocks/SM; occupancy still {n.occupancy}%, limited by {n.limiter})")
        for field in ("regs", "smem_static", "smem_dyn", "block", "stack", "spill", "occupancy", "limiter"):
            ov, nv = getattr(o, field), getattr(n, field)
            text = f"{field} {ov} -> {nv}"
            if ov != nv and not any(b.startswith(text.split(" -> ")[0]) for b in bad):
                info.append(text if field != "occupancy" else f"occupancy {ov}% -> {nv}%")
        regressions += [f"{where}: {b}" for b in bad]
        if info:
            notes.append(f"{where}: " + ", ".join(info))
    return regressions, notes


# ---------------------------------------------------------------------------------------------
# Self-test: the checker must be able to fail
# ---------------------------------------------------------------------------------------------
OCC_PROBE = r"""
#include <cstdio>
#include <cuda_occupancy.h>
// Reads "cc regs threads smem carveout(-1 = default) threads/SM smem/SM smem/block-optin" lines
// (the device properties from ARCH_LIMITS), prints blocks per SM.
int main() {
  int cc, regs, threads, carveout, sm_threads; long smem, sm_smem, optin;
  while (std::scanf("%d %d %d %ld %d %d %ld %ld", &cc, &regs, &threads, &smem, &carveout, &sm_threads, &sm_smem,
                    &optin) == 8) {
    cudaOccDeviceProp p;
    p.computeMajor = cc / 10; p.computeMinor = cc % 10;
    p.maxThreadsPerBlock = 1024; p.maxThreadsPerMultiprocessor = sm_threads; p.regsPerBlock = 65536;
    p.regsPerMultiprocessor = 65536; p.warpSize = 32; p.sharedMemPerBlock = 48 * 1024;
    p.sharedMemPerMultiprocessor = sm_smem;
    p.sharedMemPerBlockOptin = optin; p.reservedSharedMemPerBlock = 1024;
    p.numSms = 100;
    cudaOccFuncAttributes a;
    a.maxThreadsPerBlock = 1024; a.numRegs = regs; a.sharedSizeBytes = 0;
    a.partitionedGCConfig = PARTITIONED_GC_OFF; a.shmemLimitConfig = FUNC_SHMEM_LIMIT_OPTIN;
    a.maxDynamicSharedSizeBytes = smem;
    cudaOccDeviceState s;
    if (carveout >= 0) s.carveoutConfig = carveout;
    cudaOccResult r;
    cudaOccError e = cudaOccMaxActiveBlocksPerMultiprocessor(&r, &p, &a, &s, threads, smem);
    std::printf("%d\n", e == CUDA_OCC_SUCCESS ? r.activeBlocksPerMultiprocessor : -1);
  }
}
"""


def cross_check_occupancy(failures):
    """Compares occupancy() with the toolkit's cuda_occupancy.h on a grid of launches."""
    header_dirs = [Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        header_dirs.append(Path(nvcc).resolve().parent.parent / "include")
    inc = next((d for d in header_dirs if (d / "cuda_occupancy.h").is_file()), None)
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if not inc or not cxx:
        print("kernel_report: self-test: no C++ compiler or cuda_occupancy.h; skipping the cross-check "
              "against the toolkit's occupancy calculator")
        return 0
    cases = [(arch, regs, threads, smem, carve)
             for arch in ARCH_LIMITS
             for threads in (32, 64, 96, 128, 160, 256, 384, 512, 640, 1024)
             for regs in (8, 16, 24, 32, 40, 48, 64, 72, 96, 128, 168, 200, 232, 255)
             for smem in (0, 1000, 12288, 24576, 49152, 81920, 100000, 166912, 200000)
             for carve in (None, 0, 25, 50, 100)
             if smem <= ARCH_LIMITS[arch].smem_per_block_max]
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "probe.cpp", Path(tmp) / "probe"
        src.write_text(OCC_PROBE)
        r = subprocess.run([cxx, "-O1", f"-I{inc}", str(src), "-o", str(exe)], capture_output=True, text=True)
        if r.returncode != 0:
            failures.append(f"could not build the cuda_occupancy.h probe:\n{r.stderr}")
            return 0
        lines = "".join(f"{arch[3:5]} {regs} {threads} {smem} {-1 if carve is None else carve} "
                        f"{ARCH_LIMITS[arch].max_warps * 32} {ARCH_LIMITS[arch].smem_capacities_kib[-1] * KIB} "
                        f"{ARCH_LIMITS[arch].smem_per_block_max}\n"
                        for arch, regs, threads, smem, carve in cases)
        out = subprocess.run([str(exe)], input=lines, capture_output=True, text=True).stdout.split()
    if len(out) != len(cases):
        failures.append(f"cuda_occupancy.h probe answered {len(out)} of {len(cases)} cases")
        return 0
    for (arch, regs, threads, smem, carve), want in zip(cases, out):
        got = occupancy(ARCH_LIMITS[arch], regs, threads, smem, carve).blocks
        if got != int(want):
            failures.append(f"occupancy {arch} regs={regs} threads={threads} smem={smem} carveout={carve}: "
                            f"{got} blocks/SM, cuda_occupancy.h says {want}")
    return len(cases)


def self_test():
    failures = []
    lim80, lim86, lim90 = ARCH_LIMITS["sm_80"], ARCH_LIMITS["sm_86"], ARCH_LIMITS["sm_90"]
    # Hand-worked occupancy cases (the arithmetic in the comments is the documented rule).
    hand = [
        # 255 regs -> 8160 -> 8192 per warp; 16384 / 8192 = 2 warps per sub-partition, 8 per SM -> 2 blocks of 4.
        (lim80, 255, 128, 0, None, Occupancy(2, 8, 12, "regs")),
        # 128 regs, 8 warps: 4 warps/sub-partition -> 16 warps -> 2 blocks; smem 80 KiB + 1 KiB: 164 KiB / 81 KiB = 2.
        (lim80, 128, 256, 81920, None, Occupancy(2, 16, 25, "regs+smem")),
        # Same on sm_90: 228 KiB / 81 KiB = 2 as well.
        (lim90, 128, 256, 81920, None, Occupancy(2, 16, 25, "regs+smem")),
        # 1024 threads at 32 regs: warps 64 / 32 = 2, registers 16 warps/sub-partition -> 64 warps -> 2.
        (lim80, 32, 1024, 0, None, Occupancy(2, 64, 100, "regs+warps")),
        # One-warp blocks: the 32 resident blocks cap binds at 32 warps.
        (lim90, 16, 32, 0, None, Occupancy(32, 32, 50, "blocks")),
        # sm_86: 16 resident blocks cap: 16 one-warp blocks, 16 of 48 warps.
        (lim86, 16, 32, 0, None, Occupancy(16, 16, 33, "blocks")),
        # sm_86: 1024 threads = 32 warps of the 48 resident: one block.
        (lim86, 32, 1024, 0, None, Occupancy(1, 32, 66, "warps")),
        # sm_86: 70144 + 1024 B -> 71168; the 100 KiB per SM hold one (the registers would allow 2).
        (lim86, 220, 128, 70144, None, Occupancy(1, 4, 8, "smem")),
        # sm_86: 99 KiB per block is the most one block may ask; 99 KiB + 1 B cannot launch.
        (lim86, 32, 128, 99 * KIB, None, Occupancy(1, 4, 8, "smem")),
        (lim86, 32, 128, 99 * KIB + 1, None, Occupancy(0, 0, 0, "smem>99KiB")),
        # 20 KiB + 1 KiB reserve = 21 KiB: 164 KiB fits 7; with a 25% carveout (41 KiB -> 64 KiB) 3.
        (lim80, 32, 128, 20 * KIB, None, Occupancy(7, 28, 43, "smem")),
        (lim80, 32, 128, 20 * KIB, 25, Occupancy(3, 12, 18, "smem")),
        # A 0% carveout is a hint: one block's 21 KiB needs the 32 KiB capacity -> 1 block.
        (lim80, 32, 128, 20 * KIB, 0, Occupancy(1, 4, 6, "smem")),
        # Too much: 256 regs, or 256 regs x 1024 threads, or more shared memory than a block may have.
        (lim80, 256, 128, 0, None, Occupancy(0, 0, 0, "regs>file")),
        (lim80, 128, 1024, 0, None, Occupancy(0, 0, 0, "regs>file")),
        (lim80, 32, 128, 164 * KIB, None, Occupancy(0, 0, 0, "smem>163KiB")),
    ]
    for lim, regs, threads, smem, carve, want in hand:
        got = occupancy(lim, regs, threads, smem, carve)
        if got != want:
            failures.append(f"occupancy CC {lim.name} regs={regs} threads={threads} smem={smem} carveout={carve}: "
                            f"{got}, expected {want}")
    n_cross = cross_check_occupancy(failures)

    def row(**kw):
        base = dict(arch="sm_80", file="matmul.cu", kernel="gemm_tc_kernel<Tile<128, 128, 2, 4, 4>, true, true>",
                    regs=123, smem_dyn=81920, block=256, hmma=32, ldg128=10, stg128=20, lds128=10, ldsm=12, ldgsts=16)
        base.update(kw)
        r = Row(**base)
        occ = occupancy(arch_limits(r.arch), r.regs, r.block, r.smem_static + r.smem_dyn)
        r.blocks_sm, r.warps_sm, r.occupancy, r.limiter = occ.blocks, occ.warps, occ.percent, occ.limiter
        return r

    def hopper_row(**kw):
        base = dict(arch="sm_90a", file="matmul_sm90.cu", kernel="sm90::gemm_ws_kernel<sm90::Config<256, 4>, true, true>",
                    regs=168, smem_dyn=197632, block=384, hmma=0, ldg128=0, stg128=0, lds128=0, ldsm=0, ldgsts=0,
                    hgmma=8, utmaldg=3, utmastg=0, syncs=20)
        base.update(kw)
        return row(**base)

    # (description, mutated row, expected regression substring or None for "notes only")
    cases = [
        ("new spill", row(spill=16), "new spill"),
        ("new stack use", row(stack=32), "new stack use"),
        ("lost HMMA", row(hmma=0), "HMMA 32 -> 0 (lost)"),
        ("lost LDSM", row(ldsm=0), "LDSM 12 -> 0 (lost)"),
        ("lost LDGSTS", row(ldgsts=0), "LDGSTS 16 -> 0 (lost)"),
        ("lost LDG.128", row(ldg128=0), "LDG.128 10 -> 0 (lost)"),
        ("lost STG.128", row(stg128=0), "STG.128 20 -> 0 (lost)"),
        ("lost LDS.128", row(lds128=0), "LDS.128 10 -> 0 (lost)"),
        ("lost HGMMA", hopper_row(hgmma=0), "HGMMA 8 -> 0 (lost)"),
        ("lost UTMALDG", hopper_row(utmaldg=0), "UTMALDG 3 -> 0 (lost)"),
        ("lost SYNCS", hopper_row(syncs=0), "SYNCS 20 -> 0 (lost)"),
        ("new Hopper spill", hopper_row(spill=8), "new spill"),
        ("occupancy drop (regs 123 -> 130)", row(regs=130), "occupancy 25% -> 12%"),
        ("occupancy drop (more smem)", row(smem_dyn=90000), "occupancy 25% -> 12%"),
        # smem-limited (2 blocks) small tile: 88 -> 100 regs drops the register limit 5 -> 4 blocks.
        ("register step behind another limiter",
         row(kernel="k", regs=100, block=128, smem_dyn=60000), "cross an occupancy step"),
        ("regs +1 within a step", row(regs=124), None),
        ("fewer HMMA, not zero", row(hmma=16), None),
        ("improvement", row(regs=90), None),
    ]
    base = {"register step behind another limiter": row(kernel="k", regs=88, block=128, smem_dyn=60000),
            "lost HGMMA": hopper_row(), "lost UTMALDG": hopper_row(), "lost SYNCS": hopper_row(),
            "new Hopper spill": hopper_row()}
    for desc, mutated, expect in cases:
        old = base.get(desc, row())
        if desc == "register step behind another limiter" and mutated.occupancy != old.occupancy:
            failures.append(f"self-test setup: '{desc}' changed the occupancy itself")
        regs_, notes = compare([old], [mutated])
        if expect is None:
            if regs_:
                failures.append(f"'{desc}': expected notes only, got regressions {regs_}")
            elif not notes:
                failures.append(f"'{desc}': expected a note about the difference, got none")
        elif not any(expect in r for r in regs_):
            failures.append(f"'{desc}': expected a regression containing '{expect}', got {regs_ or 'none'}")
    # Identical reports: nothing to say. New and removed kernels: notes, not failures.
    regs_, notes = compare([row()], [row()])
    if regs_ or notes:
        failures.append(f"identical rows: expected no output, got {regs_ + notes}")
    regs_, notes = compare([row()], [row(), row(kernel="new_kernel", hmma=0)])
    if regs_ or not any("new kernel" in n for n in notes):
        failures.append(f"new kernel: expected a note only, got regressions {regs_}, notes {notes}")
    # Absolute checks: a spill anywhere and a tensor-core kernel without HMMA fail, even when new.
    probs = absolute_problems([row(kernel="sample_kernel_v2", file="sampling.cu", spill=8, hmma=0)], [])
    if not any("spills" in p for p in probs):
        failures.append(f"a new kernel that spills must fail the absolute check, got {probs}")
    if not any("no HMMA" in p for p in absolute_problems([row(hmma=0)], [])):
        failures.append("gemm_tc_kernel without HMMA must fail the absolute check")
    # The Hopper GEMM's sm_90a build: no HGMMA, no TMA load, no mbarrier, or a spill fail; its sm_80
    # stub (no Hopper instructions) passes; the kernel missing from a Hopper build fails.
    sm90_file = [Path("kernels/matmul_sm90.cu")]
    if absolute_problems([hopper_row()], sm90_file):
        failures.append(f"a complete Hopper GEMM must pass, got {absolute_problems([hopper_row()], sm90_file)}")
    for field, label in (("hgmma", "HGMMA"), ("utmaldg", "UTMALDG"), ("syncs", "SYNCS")):
        probs = absolute_problems([hopper_row(**{field: 0})], sm90_file)
        if not any(f"no {label}" in p for p in probs):
            failures.append(f"a Hopper GEMM without {label} must fail the absolute check, got {probs}")
    if not any("spills" in p for p in absolute_problems([hopper_row(spill=4)], sm90_file)):
        failures.append("a Hopper GEMM that spills must fail the absolute check")
    stub = hopper_row(arch="sm_80", hgmma=0, utmaldg=0, syncs=0)
    if absolute_problems([stub, hopper_row()], sm90_file):
        failures.append(f"the sm_80 stub of the Hopper GEMM must pass, got {absolute_problems([stub], sm90_file)}")
    probs = absolute_problems([stub, row(arch="sm_90a", file="matmul_sm90.cu", kernel="renamed_kernel")], sm90_file)
    if not any("NEEDS_HOPPER" in p for p in probs):
        failures.append(f"a Hopper build without the Hopper GEMM must fail naming NEEDS_HOPPER, got {probs}")
    if find_launch("matmul_sm90.cu", hopper_row().kernel)[0] is None:
        failures.append("LAUNCHES has no entry matching the Hopper GEMM's name")
    # The Hopper attention forward: the same absolute checks, and its launch entry.
    att_file = [Path("kernels/attention_sm90.cu")]
    att = dict(file="attention_sm90.cu", kernel="sm90::attention_fwd_ws_kernel<128>", smem_dyn=164864, hgmma=32,
               utmaldg=6, syncs=24)
    if absolute_problems([hopper_row(**att)], att_file):
        failures.append(f"a complete Hopper attention must pass, got {absolute_problems([hopper_row(**att)], att_file)}")
    for field, label in (("hgmma", "HGMMA"), ("utmaldg", "UTMALDG"), ("syncs", "SYNCS")):
        probs = absolute_problems([hopper_row(**{**att, field: 0})], att_file)
        if not any(f"no {label}" in p for p in probs):
            failures.append(f"a Hopper attention without {label} must fail the absolute check, got {probs}")
    launch, match = find_launch("attention_sm90.cu", att["kernel"])
    if launch is None or launch.resolve("dyn_smem", match) != att["smem_dyn"]:
        failures.append("LAUNCHES has no entry for the Hopper attention giving its 164864 bytes at head dim 128")
    # A kernel with neither __launch_bounds__ nor a LAUNCHES entry must fail, naming where to add it.
    probs = []
    make_row("sm_80", "sampling.cu", "brand_new_kernel", {"regs": 32}, {k: 0 for k in SASS_COUNTS}, None, None, probs)
    if not any("LAUNCHES in tools/kernel_report.py" in p for p in probs):
        failures.append(f"a kernel without a block size must fail naming LAUNCHES, got {probs}")
    probs = []
    make_row("sm_80", "attention.cu", "attention_kv_append_kernel", {"regs": 32}, {k: 0 for k in SASS_COUNTS},
             512, None, probs)
    if not any("make them agree" in p for p in probs):
        failures.append(f"__launch_bounds__ disagreeing with LAUNCHES must fail, got {probs}")
    # Markdown round trip, and a malformed report names the file and line.
    rows = [row(), row(arch="sm_90a"), hopper_row(), row(kernel="classifier_kernel<true>", file="classifier.cu", block=1024,
                                           shape_dependent=True, hmma=0, smem_dyn=0)]
    text = render(rows, ["sm_80", "sm_90a"], "release 0.0, V0.0.0", None)
    back, ver = parse_report(text, "x.md")
    if [dataclasses.astuple(r) for r in sorted(back, key=lambda r: r.key)] != \
            [dataclasses.astuple(r) for r in sorted(rows, key=lambda r: r.key)] or ver != "release 0.0, V0.0.0":
        failures.append("render -> parse_report does not round-trip")
    try:
        parse_report(text.replace("| 123 |", "| 1x3 |", 1), "x.md")
        failures.append("a non-numeric cell must be rejected")
    except ReportError as e:
        if "x.md:" not in str(e):
            failures.append(f"parse error must name file:line, got '{e}'")
    for f in failures:
        print(f"kernel_report: self-test FAILED: {f}", file=sys.stderr)
    if failures:
        return 1
    print(f"kernel_report: self-test passed: {len(hand)} hand-worked occupancy cases, {n_cross} cases agree with "
          f"cuda_occupancy.h, {len(cases) + 2} comparison cases, absolute checks, report round trip")
    return 0


# ---------------------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="sm_80,sm_86,sm_90a",
                    help="comma-separated architectures (default sm_80,sm_86,sm_90a)")
    ap.add_argument("--check", nargs="?", const="", metavar="REPORT",
                    help=f"fail on a lost HMMA, a spill or a kernel without a launch configuration; with REPORT "
                         f"(e.g. {DOC}) also on a regression against it")
    ap.add_argument("--out", help=f"write the markdown report to this file ({DOC} is committed)")
    ap.add_argument("--carveout", type=int, metavar="PCT",
                    help="preferred shared-memory carveout in percent for the occupancy (default: none, full capacity)")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="parallel nvcc runs (default 1)")
    ap.add_argument("--self-test", action="store_true", help="test the checker itself on synthetic reports (no nvcc)")
    ap.add_argument("files", nargs="*", help="kernel files (default: kernels/*.cu)")
    a = ap.parse_args()

    if a.self_test:
        sys.exit(self_test())
    if a.check and a.check.endswith(".cu"):
        ap.error(f"--check takes a report (e.g. {DOC}), got '{a.check}': list kernel files before --check")
    if a.carveout is not None and not 0 <= a.carveout <= 100:
        ap.error(f"--carveout must be 0..100, got {a.carveout}")
    old_rows = old_text = None
    if a.check:
        try:
            old_text = Path(a.check).read_text()
            old_rows, old_ver = parse_report(old_text, a.check)
        except OSError as e:
            sys.exit(f"kernel_report: cannot read {a.check}: {e.strerror} (generate it with `{REGENERATE}`)")
        except ReportError as e:
            sys.exit(f"kernel_report: {e} (regenerate it with `{REGENERATE}`)")

    nvcc = find_tool("nvcc", [os.environ.get("NVCC"), "/usr/local/cuda/bin/nvcc"])
    venv_cuobjdump = sorted((ROOT / ".venv").glob("lib/python*/site-packages/nvidia/cu*/bin/cuobjdump"))
    cuobjdump = find_tool("cuobjdump", [os.environ.get("CUOBJDUMP")] + [str(p) for p in venv_cuobjdump])
    if not nvcc or not cuobjdump:
        sys.exit("kernel_report: needs nvcc (CUDA toolkit) and cuobjdump (tools/setup.sh installs "
                 "PyPI's nvidia-cuda-cuobjdump into .venv)")
    files = [Path(f) for f in a.files] or sorted((ROOT / "kernels").glob("*.cu"))
    for f in files:
        if not f.is_file():
            sys.exit(f"kernel_report: no such kernel file: {f}")
    archs = a.arch.split(",")
    for arch in archs:
        arch_limits(arch)

    rows, problems = build_rows(nvcc, cuobjdump, files, archs, max(1, a.jobs), a.carveout)
    problems = absolute_problems(rows, files) + problems
    nvcc_ver = nvcc_version(nvcc)
    text = render(rows, archs, nvcc_ver, a.carveout)
    print(text, end="")
    if a.out:
        Path(a.out).write_text(text)
    for p in problems:
        print(f"kernel_report: {p}", file=sys.stderr)
    if a.check is None:
        return
    failed = bool(problems)
    if old_rows is not None:
        names = {f.name for f in files}  # compare only what was compiled this time
        old_rows = [r for r in old_rows if r.file in names and r.arch in archs]
        regressions, notes = compare(old_rows, rows)
        if old_ver != nvcc_ver:
            notes.insert(0, f"compiler changed: {a.check} was made with nvcc {old_ver}, this run used {nvcc_ver}")
        for n in notes:
            print(f"kernel_report: note: {n}", file=sys.stderr)
        for r in regressions:
            print(f"kernel_report: REGRESSION: {r}", file=sys.stderr)
        failed = failed or bool(regressions)
        # A run over some of the files always differs textually; then only the rows count.
        if regressions or notes or (not a.files and text != old_text):
            how = REGENERATE if Path(a.check).resolve() == (ROOT / DOC).resolve() else \
                f"tools/kernel_report.sh --out {a.check}"
            print(f"kernel_report: {a.check} differs from this build's report"
                  f"{' (see the regressions above)' if regressions else ''}; if the change is intended, "
                  f"regenerate it from the repository root with `{how}` and commit it", file=sys.stderr)
    if failed:
        sys.exit(1)
    print(f"kernel_report: {len(rows)} kernel builds checked: tensor cores present, the Hopper kernels have HGMMA, TMA "
          f"loads and mbarriers, no spills, every kernel has a launch configuration" + (f", no regression against {a.check}" if a.check else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
