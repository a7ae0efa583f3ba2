#!/usr/bin/env python3
"""Tables and plots for the self-improvement experiments (docs/experiments.md).

  tools/plot.py e1 RUNS/e1 --png docs/img/e1_accuracy.png --md RUNS/e1/table.md
  tools/plot.py e2 RUNS/e2 --png docs/img/e2_loss.png --md RUNS/e2/table.md

Layout read (written by tools/experiments/e1_addition.sh and e2_text.sh):
  RUNS/<arm>/seed<S>/eval.json     `ouro eval --task add --json`: {"greedy": {"1": acc, ...}, "majority": {...}}
  RUNS/<arm>/seed<S>/rounds.jsonl  one object per loop round (src/loop/loop.cpp)
  RUNS/<arm>/seed<S>/rounds_eval.jsonl  e1: {"step", "eval"} per round's checkpoint (baseline, majority):
                                   the per-round figure, PNG_rounds.png next to --png
  RUNS/<arm>/seed<S>/final.json    `ouro eval --data VAL --json` of the final model (e2): {"loss", "tail_loss", ...}
The arms are those of RUNS/arms.txt in its order (one name per line), else every <arm>/seed*/ alphabetically.
Every figure is the mean over seeds; the markdown shows mean and, with more than one seed, the
min..max range, so a reader sees the spread instead of a single lucky run.
"""
import argparse
import json
import math
import sys
from pathlib import Path


def fail(msg):
    print(f"plot.py: {msg}", file=sys.stderr)
    sys.exit(1)


def arms_of(root: Path):
    order_file = root / "arms.txt"
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("seed*")))
    if order_file.exists():
        order = [a.strip() for a in order_file.read_text().splitlines() if a.strip()]
        missing = [a for a in order if a not in found]
        if missing:
            fail(f"{order_file}: no seed*/ results for arm(s) {', '.join(missing)}")
        return order
    return found


def seeds_of(arm_dir: Path):
    return sorted(p for p in arm_dir.glob("seed*") if p.is_dir())


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        fail(f"{path}: missing (did the experiment finish?)")
    except json.JSONDecodeError as e:
        fail(f"{path}: not JSON ({e})")


def read_rounds(path: Path):
    rows = []
    if not path.exists():
        fail(f"{path}: missing")
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                fail(f"{path}:{n}: not JSON ({e})")
    return rows


def mean(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else float("nan")


def cell(xs, fmt):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "—"
    if len(xs) == 1:
        return fmt.format(xs[0])
    return f"{fmt.format(mean(xs))} ({fmt.format(min(xs))}..{fmt.format(max(xs))})"


def plt_module():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def e1(root: Path, png: Path, md: Path, key: str, unit: str = "digits", trained: int = 0):
    arms = arms_of(root)
    if not arms:
        fail(f"{root}: no <arm>/seed*/ directories")
    acc = {}  # arm -> digits -> [acc per seed]
    for arm in arms:
        for s in seeds_of(root / arm):
            r = read_json(s / "eval.json")
            if key not in r:
                fail(f"{s / 'eval.json'}: no '{key}' accuracies")
            for d, a in r[key].items():
                acc.setdefault(arm, {}).setdefault(int(d), []).append(float(a))
    digits = sorted({d for a in acc.values() for d in a})
    # --trained N: one more column, the goal measure: per seed the mean over N+1..N+3
    # (the lengths the rounds reach and one past), then mean (min..max) over seeds.
    beyond = [d for d in (trained + 1, trained + 2, trained + 3) if trained and all(d in acc[a] for a in arms)]
    extra = [f"mean {beyond[0]}..{beyond[-1]} {unit}"] if beyond else []
    lines = [f"| arm | " + " | ".join([f"{d} {unit}" for d in digits] + extra) + " |",
             "|---|" + "---|" * (len(digits) + len(extra))]
    for arm in arms:
        cells = [cell(acc[arm].get(d, []), "{:.2f}") for d in digits]
        if beyond:
            n = min(len(acc[arm][d]) for d in beyond)
            cells.append(cell([mean([acc[arm][d][s] for d in beyond]) for s in range(n)], "{:.2f}"))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    md.write_text("\n".join(lines) + "\n")
    plt = plt_module()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, arm in enumerate(arms):
        ds = [d for d in digits if d in acc[arm]]
        m = [mean(acc[arm][d]) for d in ds]
        color = f"C{i % 10}"  # one color per arm: the band must match its line
        ax.plot(ds, m, marker="o", label=arm, color=color)
        if any(len(acc[arm][d]) > 1 for d in ds):
            ax.fill_between(ds, [min(acc[arm][d]) for d in ds], [max(acc[arm][d]) for d in ds], alpha=0.15,
                            color=color)
    ax.set_xlabel(f"{unit} (difficulty)")
    ax.set_ylabel(f"exact-match accuracy ({key})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("E1: length generalization (mean over seeds, band = min..max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    e1_rounds(root, png.with_name(png.stem + "_rounds" + png.suffix), key, unit)


def e1_rounds(root: Path, png: Path, key: str, unit: str = "digits"):
    """Lee et al.'s figure: accuracy by digit count after each round, majority next to baseline,
    from RUNS/<arm>/seed<S>/rounds_eval.jsonl (one {"step", "eval"} per round's checkpoint) and
    the base model (round 0). Skipped when the runs have no per-round evaluations."""
    arms = [a for a in ("baseline", "majority") if all((s / "rounds_eval.jsonl").exists() for s in seeds_of(root / a))
            and seeds_of(root / a)]
    if not arms:
        return
    # Keyed by checkpoint step, not by the checkpoint's index: a round the guard rolls back leaves
    # no checkpoint of its own, so the i-th checkpoint of two seeds can be at different steps.
    curves = {}  # arm -> step (-1: the base) -> digits -> [acc per seed]
    for arm in arms:
        for s in seeds_of(root / arm):
            evals = [(-1, read_json(root / "base" / s.name / "eval.json"))]
            evals += [(int(r["step"]), r["eval"]) for r in read_rounds(s / "rounds_eval.jsonl")]
            for step, e in evals:
                for d, a in e[key].items():
                    curves.setdefault(arm, {}).setdefault(step, {}).setdefault(int(d), []).append(float(a))
    n_points = max(len(c) for c in curves.values())
    if n_points < 3:  # the base and one checkpoint: the main figure already shows them (a one-round smoke run)
        return
    plt = plt_module()
    fig, axes = plt.subplots(1, len(arms), figsize=(5 * len(arms), 3.8), sharey=True, squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, arm in zip(axes[0], arms):
        n_seeds = len(seeds_of(root / arm))
        steps = sorted(curves[arm])
        for i, step in enumerate(steps):
            ds = sorted(curves[arm][step])
            n = min(len(curves[arm][step][d]) for d in ds)
            label = "base" if step < 0 else f"step {step}" + (f" ({n} of {n_seeds} seeds)" if n < n_seeds else "")
            ax.plot(ds, [mean(curves[arm][step][d]) for d in ds], marker="o",
                    color=cmap(i / max(1, len(steps) - 1)), label=label)
        ax.set_title(f"{arm} (mean over {n_seeds} seeds)")
        ax.set_xlabel(f"{unit} (difficulty)")
        ax.grid(alpha=0.3)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(f"exact-match accuracy ({key})")
    fig.tight_layout()
    fig.savefig(png, dpi=120)


E2_METRICS = [("val_loss", "held-out loss", "{:.4f}"), ("val_loss_tail", "tail loss", "{:.4f}"),
              ("distinct_2", "distinct-2", "{:.3f}"), ("real_distinct_2", "real text distinct-2", "{:.3f}"),
              ("self_bleu", "self-BLEU", "{:.3f}"), ("real_self_bleu", "real text self-BLEU", "{:.3f}"),
              ("accept_rate", "accept rate", "{:.2f}"), ("rolled_back", "rolled back", "{:.0f}")]


def e2(root: Path, png: Path, md: Path):
    arms = arms_of(root)
    if not arms:
        fail(f"{root}: no <arm>/seed*/ directories")
    rounds, final = {}, {}
    for arm in arms:
        for s in seeds_of(root / arm):
            rounds.setdefault(arm, []).append(read_rounds(s / "rounds.jsonl"))
            final.setdefault(arm, []).append(read_json(s / "final.json"))
    lines = ["| arm | final held-out loss | final tail loss | " + " | ".join(t for _, t, _ in E2_METRICS[2:]) + " |",
             "|---|---|---|" + "---|" * (len(E2_METRICS) - 2)]
    for arm in arms:
        row = [cell([f["loss"] for f in final[arm]], "{:.4f}"), cell([f["tail_loss"] for f in final[arm]], "{:.4f}")]
        for k, _, fmt in E2_METRICS[2:]:
            # Per seed: the mean over its rounds (rolled_back: how many rounds were rolled back).
            per_seed = []
            for rs in rounds[arm]:
                # Sample statistics exist only for rounds that generated (not the baseline's).
                vals = [float(r[k]) for r in rs if k in r and r[k] is not None
                        and (k == "rolled_back" or r.get("generated", 0) > 0)]
                per_seed.append(sum(vals) if k == "rolled_back" else (mean(vals) if vals else None))
            row.append(cell(per_seed, fmt))
        lines.append(f"| {arm} | " + " | ".join(row) + " |")
    md.write_text("\n".join(lines) + "\n")
    plt = plt_module()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, arm in enumerate(arms):
        for ax, key in zip(axes, ("val_loss", "val_loss_tail", "distinct_2")):
            series = [[r.get(key) if key.startswith("val_") or r.get("generated", 0) > 0 else None for r in rs]
                      for rs in rounds[arm]]
            n = min(len(s) for s in series)
            if n == 0 or all(x is None for s in series for x in s):
                continue  # e.g. the baseline has no samples to measure
            # One color per arm in every panel (the baseline is absent from the last one).
            ax.plot(range(1, n + 1), [mean([s[r] for s in series]) for r in range(n)], marker="o", label=arm,
                    color=f"C{i % 10}")
    for ax, title in zip(axes, ("held-out loss after each round\n(a rolled-back round: the loss that undid it)",
                                "tail loss (hardest windows)",
                                "distinct-2 of accepted samples")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", choices=["e1", "e2"])
    ap.add_argument("runs", type=Path, help="the experiment's output directory")
    ap.add_argument("--png", type=Path, required=True)
    ap.add_argument("--md", type=Path, required=True, help="markdown table to write")
    ap.add_argument("--key", default="greedy", help="e1: greedy or majority accuracy")
    ap.add_argument("--unit", default="digits", help="e1: what the difficulty counts (digits, letters)")
    ap.add_argument("--trained", type=int, default=0,
                    help="e1: the longest trained difficulty N; adds the mean over N+1..N+3 to the table")
    a = ap.parse_args()
    if not a.runs.is_dir():
        fail(f"{a.runs}: not a directory")
    a.png.parent.mkdir(parents=True, exist_ok=True)
    a.md.parent.mkdir(parents=True, exist_ok=True)
    if a.experiment == "e1":
        e1(a.runs, a.png, a.md, a.key, a.unit, a.trained)
    else:
        e2(a.runs, a.png, a.md)
    print(f"wrote {a.png} and {a.md}")


if __name__ == "__main__":
    main()
