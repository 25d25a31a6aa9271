"""Chart of `cargo xtask soak`: reads samples.csv, writes one PNG with the receiver's memory, its
BPF map entries, its export queue and the span rates over time.

    python soak_charts.py target/soak/<run>/samples.csv target/soak/<run>/soak.png [RESTART_S]

RESTART_S (optional): when the Collector was restarted, drawn as a vertical line.
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    src, dst = sys.argv[1], sys.argv[2]
    restart = float(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else None
    with open(src) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit("no samples")
    t = [float(r["t_s"]) / 60.0 for r in rows]
    col = lambda k: [float(r[k]) for r in rows]  # noqa: E731
    maps = [k for k in rows[0] if k.startswith("map_")]

    fig, ax = plt.subplots(4, 1, figsize=(10, 12), sharex=True)
    ax[0].plot(t, [v / 1024 for v in col("rss_kib")], label="VmRSS")
    if "rss_anon_kib" in rows[0]:
        ax[0].plot(t, [v / 1024 for v in col("rss_anon_kib")], label="RssAnon (allocations)")
    ax[0].plot(t, [v / 1024 for v in col("hwm_kib")], label="VmHWM", linestyle=":")
    ax[0].set_ylabel("receiver memory (MiB)")
    ax[0].set_ylim(bottom=0)

    ax[1].plot(t, col("conns_run"), label="CONNS: this run's processes")
    ax[1].plot(t, col("conns_total"), label="CONNS: whole host", linestyle=":")
    for m in maps:
        if m != "map_CONNS":
            ax[1].plot(t, col(m), label=m[4:], linewidth=0.8)
    ax[1].set_ylabel("BPF map entries")
    ax[1].set_ylim(bottom=0)

    ax[2].plot(t, [v / 1024 for v in col("queue_bytes")], label="export queue")
    ax[2].set_ylabel("export queue (KiB)")
    ax[2].set_ylim(bottom=0)

    def rate(key):
        v = col(key)
        out = [0.0]
        for i in range(1, len(v)):
            dt = (t[i] - t[i - 1]) * 60.0
            out.append((v[i] - v[i - 1]) / dt if dt > 0 else 0.0)
        return out

    ax[3].plot(t, rate("spans_created"), label="created by the receiver")
    ax[3].plot(t, rate("spans_exported"), label="accepted by the Collector", linestyle="--")
    ax[3].plot(t, rate("spans_delivered"), label="delivered (this run's)", linestyle=":")
    ax[3].set_ylabel("spans / s")
    ax[3].set_xlabel("minutes")
    ax[3].set_ylim(bottom=0)

    for a in ax:
        if restart is not None:
            a.axvline(restart / 60.0, color="grey", linestyle="--", linewidth=0.8)
        a.grid(True, alpha=0.3)
        a.legend(loc="upper left", fontsize=8)
    fig.suptitle("cargo xtask soak: the receiver over time (dashed line: Collector restart)")
    fig.tight_layout()
    fig.savefig(dst, dpi=100)
    print(dst)


if __name__ == "__main__":
    main()
