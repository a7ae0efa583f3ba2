#!/usr/bin/env python3
"""Turns `ouro bench all`'s bench.json (schema "ouro-bench/1", documented at the top of
src/bench/bench_result.cpp) into:

  --png PATH       the roofline plot: each kernel's achieved FLOP/s against its arithmetic
                   intensity (FLOPs / bytes moved at least once), under the ceilings of the same
                   run: the measured device-to-device copy bandwidth and the compute peak (the peak
                   table's bf16 rate; without one, the best cuBLASLt rate measured, else none).
  --perf-md PATH   docs/perf.md's measured section, between `<!-- bench:begin -->` and
                   `<!-- bench:end -->`: one `### <device> (<backend>)` subsection per device, so a
                   GPU report replaces the GPU's subsection and keeps the CPU's. The rest of the
                   file is left as it is. Smoke reports (--small) are refused unless --allow-small.

`ouro bench all` runs this with --png when the tools venv is there.
"""
import argparse
import json
import sys
from pathlib import Path

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def load(path):
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"bench_report: cannot read {path}: {e}")
    if report.get("schema") != "ouro-bench/1":
        sys.exit(f"bench_report: {path}: schema is {report.get('schema')!r}, expected 'ouro-bench/1'")
    for key in ("device", "backend", "date_utc", "commit", "records"):
        if key not in report:
            sys.exit(f"bench_report: {path}: missing key {key!r}")
    return report


def number(v):
    return f"{v:.4g}"


def roofline_points(report):
    """(kernel, intensity FLOP/B, achieved FLOP/s) of every kernel record with FLOPs, bytes and a time."""
    points = []
    for r in report["records"]:
        if r.get("bench") != "kernels" or not (r.get("flops") and r.get("bytes") and r.get("seconds")):
            continue
        points.append((r["name"], r["flops"] / r["bytes"], r["flops"] / r["seconds"]))
    return points


def compute_roof(report):
    """(FLOP/s, label) of the compute ceiling, or (None, reason)."""
    if report.get("peak_flops"):
        return report["peak_flops"], f"bf16 peak (table) {report['peak_flops'] / 1e12:.0f} TFLOP/s"
    lt = [r["ceiling"] for r in report["records"]
          if r.get("bench") == "kernels" and r.get("unit") == "TFLOP/s" and r.get("ceiling")]
    if lt:
        return max(lt) * 1e12, f"cuBLASLt, best measured {max(lt):.4g} TFLOP/s"
    return None, "no compute peak for this device"


def plot_roofline(report, png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = roofline_points(report)
    peak, peak_label = compute_roof(report)
    bw = (report.get("copy_gbs") or 0) * 1e9
    fig, ax = plt.subplots(figsize=(12, 6.5))
    ax.set_xscale("log")
    ax.set_yscale("log")
    xs = [p[1] for p in points] or [1.0]
    ys = [p[2] for p in points] or [1.0]
    lo, hi = min(xs) / 4, max(xs) * 4
    if bw and peak:
        hi = max(hi, 4 * peak / bw)
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    if bw:
        roof = [min(bw * x, peak) if peak else bw * x for x in grid]
        ax.plot(grid, roof, "k-", lw=2, label=f"copy d2d (measured) {bw / 1e9:.4g} GB/s")
    if peak:
        ax.axhline(peak, color="tab:red", ls="--", lw=1.5, label=peak_label)
        if bw:
            ax.axvline(peak / bw, color="grey", ls=":", lw=1, label=f"ridge {peak / bw:.0f} FLOP/B")
    # One colour per kernel, its shapes as separate points (the shapes are in bench.md): labels
    # on every point would pile up where the GEMM shapes cluster.
    markers = {"matmul": "o", "attention": "s"}
    names = list(dict.fromkeys(p[0] for p in points))
    colours = plt.get_cmap("tab20")
    for i, name in enumerate(names):
        mine = [p for p in points if p[0] == name]
        ax.scatter([p[1] for p in mine], [p[2] for p in mine], marker=markers.get(name.split()[0], "^"),
                   s=36, zorder=3, color=colours(i % 20), label=f"{name} ({len(mine)})")
    title = f"Roofline: {report['device']} ({report['backend']}), {report['date_utc'][:10]}, {report['commit']}"
    if report.get("small"):
        title += "\nsmall sizes (smoke run): figures of the emulator, not of a GPU"
    if not peak:
        title += f"\n({peak_label})"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("arithmetic intensity (FLOP / byte moved at least once)")
    ax.set_ylabel("achieved FLOP/s")
    # The frame holds the points, the compute roof and at least the left end of the bandwidth roof.
    ends = [bw * lo] if bw else []
    ax.set_ylim(min(ys + ends) / 10, max(ys + ends + [peak or 0]) * 3)
    ax.set_xlim(lo, hi)
    ax.grid(True, which="both", alpha=0.25)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="kernel (shapes)")
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=130)
    plt.close(fig)
    if not points:
        print(f"bench_report: {png}: no kernel records (backend {report['backend']}): only the roofs are drawn")


def section(report):
    """The report's `### device (backend)` subsection for docs/perf.md."""
    heading = f"### {report['device']} ({report['backend']})"
    lines = [heading, "",
             f"`{report.get('command', 'ouro bench all')}`, {report['date_utc']}, commit {report['commit']}.", "",
             "| figure | value | unit | ceiling | ratio | device | date | commit |",
             "|---|---|---|---|---|---|---|---|"]
    date = report["date_utc"][:10]
    for r in report["records"]:
        figure = f"{r['bench']}: {r['name']}" + (f" ({r['shape']})" if r.get("shape") else "")
        ceiling = f"{number(r['ceiling'])} ({r['ceiling_name']})" if r.get("ceiling") else "-"
        ratio = number(r["ratio"]) if r.get("ratio") is not None else "-"
        cells = [figure, number(r["value"]), r["unit"], ceiling, ratio, r["device"], date, report["commit"]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if report.get("skipped"):
        lines += ["", "Not run: " + "; ".join(f"{s['bench']} ({s['reason']})" for s in report["skipped"]) + "."]
    return heading, "\n".join(lines) + "\n"


def update_perf_md(report, path):
    text = Path(path).read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        sys.exit(f"bench_report: {path}: needs exactly one '{BEGIN}' before one '{END}'")
    head, rest = text.split(BEGIN, 1)
    body, tail = rest.split(END, 1)
    # The block is a sequence of "### " subsections; anything before the first one is kept.
    chunks = body.split("\n### ")
    preamble, subsections = chunks[0], {}
    for chunk in chunks[1:]:
        title = "### " + chunk.split("\n", 1)[0].strip()
        subsections[title] = "### " + chunk.strip("\n") + "\n"
    heading, new = section(report)
    subsections[heading] = new
    preamble = preamble.strip("\n")
    out = [preamble + "\n"] if preamble else []
    out += [subsections[k] for k in sorted(subsections)]
    Path(path).write_text(head + BEGIN + "\n" + "\n".join(out) + END + tail)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", help="bench.json written by `ouro bench all`")
    ap.add_argument("--png", help="write the roofline plot here")
    ap.add_argument("--perf-md", help="regenerate the measured section of this perf.md")
    ap.add_argument("--allow-small", action="store_true", help="let a --small report into --perf-md")
    args = ap.parse_args()
    if not args.png and not args.perf_md:
        ap.error("nothing to do: give --png and/or --perf-md")
    report = load(args.json)
    if args.png:
        plot_roofline(report, args.png)
        print(f"bench_report: wrote {args.png}")
    if args.perf_md:
        if report.get("small") and not args.allow_small:
            sys.exit(f"bench_report: {args.json} is a --small smoke run; its figures do not belong in "
                     f"{args.perf_md} (--allow-small to insist)")
        update_perf_md(report, args.perf_md)
        print(f"bench_report: updated {args.perf_md}")


if __name__ == "__main__":
    main()
