"""Charts of `cargo xtask bench`: reads summary.json, writes PNGs into the report directory and
prints the file names it wrote, one per line.

    python bench_charts.py target/bench/<run>/summary.json target/bench/<run>/

Per placement: throughput per configuration (closed loop, median with min-max bars), open-loop
latency percentiles per configuration, CPU per request split into application (the baseline's
server + client CPU), kernel probes (what the traced processes used above the baseline) and the
configuration's own process (receiver, bpftrace, tshark), and kernel->user bytes per request.
"""

import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CONFIG_ORDER = ["baseline", "receiver", "receiver-sink", "no-inference", "empty-programs", "tshark"]
COLORS = {
    "baseline": "#7f7f7f",
    "receiver": "#1f77b4",
    "receiver-sink": "#aec7e8",
    "no-inference": "#ff7f0e",
    "empty-programs": "#2ca02c",
    "tshark": "#d62728",
}


def med(stat):
    if not stat:
        return None
    v = stat.get("median")
    return v if v is not None and math.isfinite(v) else None


def ordered(groups):
    return sorted(groups, key=lambda g: CONFIG_ORDER.index(g["config"]) if g["config"] in CONFIG_ORDER else 99)


def workloads_of(groups, mode, placement):
    seen = []
    for g in groups:
        if g["mode"] == mode and g["placement"] == placement and g["workload"] not in seen:
            seen.append(g["workload"])
    return seen


def grid(n):
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    flat = [a for row in axes for a in row]
    for a in flat[n:]:
        a.axis("off")
    return fig, flat


def save(fig, out, name, written, layout=True):
    if layout:
        fig.tight_layout()
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(name)


def throughput_chart(groups, placement, out, written):
    ws = workloads_of(groups, "closed", placement)
    if not ws:
        return
    fig, axes = grid(len(ws))
    for ax, w in zip(axes, ws):
        gs = [g for g in ordered(groups) if g["workload"] == w and g["mode"] == "closed"
              and g["placement"] == placement and g["throughput"]]
        names = [g["config"] for g in gs]
        vals = [g["throughput"]["median"] for g in gs]
        lo = [g["throughput"]["median"] - g["throughput"]["min"] for g in gs]
        hi = [g["throughput"]["max"] - g["throughput"]["median"] for g in gs]
        ax.bar(names, vals, yerr=[lo, hi], capsize=3, color=[COLORS.get(n, "#999") for n in names])
        ax.set_title(f"{w}: requests/s (closed loop)", fontsize=9)
        ax.tick_params(axis="x", labelrotation=35, labelsize=7)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"Throughput per configuration, {placement} (median, min-max)", fontsize=10)
    save(fig, out, f"throughput-{placement}.png", written)


def latency_chart(groups, placement, out, written):
    ws = workloads_of(groups, "open", placement)
    if not ws:
        return
    fig, axes = grid(len(ws))
    for ax, w in zip(axes, ws):
        gs = [g for g in ordered(groups) if g["workload"] == w and g["mode"] == "open"
              and g["placement"] == placement and g["p50_us"]]
        names = [g["config"] for g in gs]
        width = 0.27
        for i, (key, label) in enumerate([("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")]):
            vals = [med(g[key]) or 0 for g in gs]
            xs = [j + (i - 1) * width for j in range(len(gs))]
            ax.bar(xs, vals, width, label=label)
        ax.set_xticks(range(len(gs)))
        ax.set_xticklabels(names, rotation=35, fontsize=7)
        ax.set_yscale("log")
        rate = next((g.get("target_rate") for g in gs if g.get("target_rate")), None)
        ax.set_title(f"{w}: latency µs at {rate:.0f} ops/s" if rate else f"{w}: latency µs", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.legend(fontsize=6)
    fig.suptitle(f"Open-loop latency (from the scheduled send time), {placement}", fontsize=10)
    save(fig, out, f"latency-{placement}.png", written)


def cpu_chart(groups, placement, out, written):
    ws = workloads_of(groups, "closed", placement)
    if not ws:
        return
    fig, axes = grid(len(ws))
    handles, labels = [], []
    for ax, w in zip(axes, ws):
        gs = [g for g in ordered(groups) if g["workload"] == w and g["mode"] == "closed"
              and g["placement"] == placement and g["app_us"]]
        base = next((g for g in gs if g["config"] == "baseline"), None)
        if base is None:
            continue
        app0 = med(base["app_us"]) or 0
        names, app, probes, tool, col = [], [], [], [], []
        for g in gs:
            a = med(g["app_us"]) or 0
            names.append(g["config"])
            app.append(min(a, app0))
            probes.append(max(a - app0, 0))
            tool.append(med(g["tool_us"]) or 0)
            col.append(med(g["collector_us"]) or 0)
        ax.bar(names, app, label="application (baseline)", color="#bbbbbb")
        ax.bar(names, probes, bottom=app, label="in traced processes (probes)", color="#9467bd")
        b2 = [x + y for x, y in zip(app, probes)]
        ax.bar(names, tool, bottom=b2, label="receiver / tool", color="#1f77b4")
        b3 = [x + y for x, y in zip(b2, tool)]
        ax.bar(names, col, bottom=b3, label="export peer (Collector or sink)", color="#17becf")
        ax.set_title(f"{w}: CPU µs per request", fontsize=9)
        ax.tick_params(axis="x", labelrotation=35, labelsize=7)
        ax.tick_params(axis="y", labelsize=7)
        handles, labels = ax.get_legend_handles_labels()
    fig.suptitle(f"CPU per request (closed loop), {placement}", fontsize=10)
    fig.tight_layout(rect=(0, 0.12 if len(ws) <= 2 else 0.06, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=4 if len(ws) > 2 else 2, fontsize=7)
    save(fig, out, f"cpu-per-request-{placement}.png", written, layout=False)


def bytes_chart(groups, placement, out, written):
    gs = [g for g in groups if g["mode"] == "closed" and g["placement"] == placement
          and g["config"] in ("receiver", "no-inference") and med(g["bytes_per_req"]) is not None]
    if not gs:
        return
    ws = []
    for g in gs:
        if g["workload"] not in ws:
            ws.append(g["workload"])
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(ws)), 4))
    width = 0.4
    for i, cfg in enumerate(["receiver", "no-inference"]):
        vals = []
        for w in ws:
            g = next((g for g in gs if g["workload"] == w and g["config"] == cfg), None)
            vals.append(med(g["bytes_per_req"]) if g else 0)
        ax.bar([j + (i - 0.5) * width for j in range(len(ws))], vals, width, label=cfg,
               color=COLORS[cfg])
    ax.axhline(300, color="#d62728", linestyle="--", linewidth=1, label="target 300 B")
    ax.set_xticks(range(len(ws)))
    ax.set_xticklabels(ws, rotation=25, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("bytes per request (kernel → user)")
    ax.legend(fontsize=7)
    ax.set_title(f"Kernel→user bytes per request (closed loop), {placement}", fontsize=10)
    save(fig, out, f"bytes-per-request-{placement}.png", written)


def main():
    summary = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    groups = [g for g in summary["groups"] if g["runs"] > 0]
    written = []
    placements = []
    for g in groups:
        if g["placement"] not in placements:
            placements.append(g["placement"])
    for p in placements:
        throughput_chart(groups, p, out, written)
        latency_chart(groups, p, out, written)
        cpu_chart(groups, p, out, written)
        bytes_chart(groups, p, out, written)
    for w in written:
        print(w)


if __name__ == "__main__":
    main()
