#!/usr/bin/python3
"""Plots of an nbsgd run or compare folder: `nbsgd plot DIR` runs this script.

  scripts/plot.py DIR [--gantt-steps N]

DIR is a run folder (metrics.jsonl, summary.json, config.json, trace.json when the
run had --trace) or a compare folder (compare.json and one folder per run). PNGs go
to DIR/plots/, with DIR/plots/plots.json listing each one: file, title, the number
of series (lines, bars, rows) and its size in pixels (tests read it back).

  loss_vs_time[_EXCHANGE].png     train loss against time on the run's clock
  loss_vs_samples[_EXCHANGE].png  train loss against samples trained on
  samples_per_s.png               samples/s per run as bars (the ceiling when known)
  finished_RUN.png                each worker's counted mini-batches per step (heat map)
  gantt_RUN.png                   the first steps of the trace, one row per worker

A compare folder gets one loss chart per exchange, every run of it on the chart and
its sync baseline dashed. Needs matplotlib and numpy (Debian: python3-matplotlib).
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import numpy as np  # noqa: E402

DPI = 100
SIZE = (9.0, 5.0)  # inches: 900 x 500 pixels


def read_jsonl(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def read_json(path):
    with open(path) as f:
        return json.load(f)


class Run:
    def __init__(self, name, folder):
        self.name = name
        self.folder = folder
        self.metrics = read_jsonl(os.path.join(folder, "metrics.jsonl"))
        sp = os.path.join(folder, "summary.json")
        self.summary = read_json(sp) if os.path.exists(sp) else {}
        cp = os.path.join(folder, "config.json")
        self.config = read_json(cp) if os.path.exists(cp) else {}
        self.clock = self.summary.get("clock", "run's")
        tp = os.path.join(folder, "trace.json")
        self.trace = tp if os.path.exists(tp) else None

    @property
    def exchange(self):
        return self.config.get("exchange", "?")

    @property
    def window(self):
        return self.config.get("window", "")

    @property
    def blocking(self):
        return self.exchange != "adpsgd" and self.window == "sync"

    def curve(self, x_key):
        """(x, loss) over the steps that had samples; x is t (seconds) or cumulative samples."""
        xs, ys, total = [], [], 0
        for m in self.metrics:
            total += m.get("samples", 0)
            if m.get("loss") is None:
                continue
            xs.append(m["t"] if x_key == "t" else total)
            ys.append(m["loss"])
        return np.array(xs), np.array(ys)


class Out:
    def __init__(self, folder):
        self.folder = os.path.join(folder, "plots")
        os.makedirs(self.folder, exist_ok=True)
        self.plots = []

    def save(self, fig, name, title, series, kind):
        path = os.path.join(self.folder, name)
        fig.savefig(path, dpi=DPI)
        w, h = fig.canvas.get_width_height()
        plt.close(fig)
        self.plots.append({"file": name, "title": title, "kind": kind, "series": series,
                           "width_px": int(w), "height_px": int(h)})
        print("plot: " + path)

    def finish(self, source):
        with open(os.path.join(self.folder, "plots.json"), "w") as f:
            json.dump({"source": source, "plots": self.plots}, f, indent=2)
            f.write("\n")


def smooth(y, k=10):
    if len(y) < 2:
        return y
    k = max(1, min(k, len(y)))
    c = np.cumsum(np.insert(y, 0, 0.0))
    out = np.empty(len(y))
    for i in range(len(y)):
        lo = max(0, i - k + 1)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def loss_chart(out, runs, x_key, name, title):
    fig, ax = plt.subplots(figsize=SIZE)
    series = 0
    for r in runs:
        x, y = r.curve(x_key)
        if len(x) == 0:
            continue
        style = "--" if r.blocking else "-"
        label = r.name + (" (sync baseline)" if r.blocking and len(runs) > 1 else "")
        ax.plot(x, smooth(y), style, linewidth=1.6, label=label)
        series += 1
    clocks = sorted({r.clock for r in runs})
    if x_key == "t":
        ax.set_xlabel("time (s, %s clock)" % "/".join(clocks))
    else:
        ax.set_xlabel("samples trained on (count)")
    ax.set_ylabel("train loss (moving mean of 10 steps)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    out.save(fig, name, title, series, "lines")


def throughput_chart(out, runs, ceiling):
    fig, ax = plt.subplots(figsize=SIZE)
    names = [r.name for r in runs]
    rates = [r.summary.get("samples_per_s", 0) for r in runs]
    colours = ["#7f8c8d" if r.blocking else "#2e86de" for r in runs]
    ax.bar(range(len(runs)), rates, color=colours)
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels(names, rotation=20, ha="right")
    clocks = sorted({r.clock for r in runs})
    ax.set_ylabel("samples/s (%s clock)" % "/".join(clocks))
    handles = [Patch(color="#7f8c8d", label="blocking (sync)"), Patch(color="#2e86de", label="non-blocking")]
    if ceiling:
        ax.axhline(ceiling, color="#c0392b", linestyle=":", linewidth=1.5)
        handles.append(Line2D([0], [0], color="#c0392b", linestyle=":", label="ceiling %.0f samples/s" % ceiling))
    title = "Throughput per run"
    ax.set_title(title)
    ax.set_xlabel("run")
    ax.legend(handles=handles, loc="upper left")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    out.save(fig, "samples_per_s.png", title, len(runs), "bars")


def finished_heatmap(out, r, tag):
    ks = [m.get("finished", []) for m in r.metrics]
    if not ks or not ks[0]:
        return
    a = np.array(ks, dtype=float).T  # workers x steps
    fig, ax = plt.subplots(figsize=SIZE)
    im = ax.imshow(a, aspect="auto", interpolation="nearest", cmap="viridis", origin="lower")
    cb = fig.colorbar(im, ax=ax)
    cb.set_label("counted mini-batches in the step (count)")
    ax.set_yticks(range(a.shape[0]))
    ax.set_yticklabels(["worker %d" % i for i in range(a.shape[0])])
    ax.set_xlabel("step (index)")
    ax.set_ylabel("worker")
    title = "Finished mini-batches per worker and step: %s" % r.name
    ax.set_title(title)
    # The colour bar is the legend of a heat map; a proxy entry says what a cell is.
    ax.legend(handles=[Patch(color=im.cmap(0.7), label="cell: k_i of one step")], loc="upper right", fontsize=8)
    fig.tight_layout()
    out.save(fig, "finished_%s.png" % tag, title, a.shape[0], "heatmap")


FATE_COLOUR = {"counted": "#27ae60", "wasted": "#c0392b", "skipped": "#95a5a6"}


def gantt(out, r, tag, steps):
    tr = read_json(r.trace)
    events = tr.get("traceEvents", [])
    clock = tr.get("otherData", {}).get("clock", r.clock)
    spans = [e for e in events if e.get("ph") == "X" and "step" in e.get("args", {})]
    if not spans:
        return
    first = min(e["args"]["step"] for e in spans)
    keep = [e for e in spans if e["args"]["step"] < first + steps]
    closes = [e for e in events if e.get("ph") in ("i", "I") and e.get("name") == "window close"
              and first <= e.get("args", {}).get("step", -1) < first + steps]
    workers = sorted({e["pid"] for e in keep if e["pid"] > 0})
    if not workers:
        return
    fig, ax = plt.subplots(figsize=SIZE)
    rows = 0
    for w in workers:
        y = (w - 1) * 1.0
        rows += 1
        for e in keep:
            if e["pid"] != w:
                continue
            x0, d = e["ts"] / 1e3, e["dur"] / 1e3  # milliseconds
            if e["name"] == "forward_backward":
                fate = e["args"].get("fate", "counted")
                ax.broken_barh([(x0, max(d, 1e-4))], (y + 0.35, 0.5), facecolors=FATE_COLOUR.get(fate, "#95a5a6"),
                               edgecolor="white", linewidth=0.3)
            elif e["name"].startswith("injected:"):
                ax.broken_barh([(x0, d)], (y + 0.35, 0.5), facecolors="#f39c12", hatch="//", edgecolor="#7f4f00",
                               linewidth=0.3)
            else:  # exchange / update: the comm stream, a thin bar below
                ax.broken_barh([(x0, d)], (y + 0.1, 0.2), facecolors="#8e44ad")
    for e in closes:
        ax.axvline(e["ts"] / 1e3, color="black", linestyle=":", linewidth=0.8)
    ax.set_yticks([(w - 1) + 0.5 for w in workers])
    ax.set_yticklabels(["worker %d" % (w - 1) for w in workers])
    ax.set_ylim(0, len(workers))
    ax.set_xlabel("time (ms, %s clock)" % clock)
    ax.set_ylabel("worker")
    title = "Timeline of steps %d-%d: %s" % (first, first + steps - 1, r.name)
    ax.set_title(title)
    handles = [Patch(color=FATE_COLOUR["counted"], label="mini-batch, counted"),
               Patch(color=FATE_COLOUR["wasted"], label="mini-batch, cancelled (ran, discarded)"),
               Patch(color=FATE_COLOUR["skipped"], label="mini-batch, cancelled before it began"),
               Patch(facecolor="#f39c12", hatch="//", label="injected stall / throttle"),
               Patch(color="#8e44ad", label="exchange + update (comm stream)"),
               Line2D([0], [0], color="black", linestyle=":", label="window close")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8)
    fig.tight_layout()
    out.save(fig, "gantt_%s.png" % tag, title, rows, "gantt")


def main():
    ap = argparse.ArgumentParser(description="Plots of an nbsgd run or compare folder")
    ap.add_argument("dir")
    ap.add_argument("--gantt-steps", type=int, default=6, help="steps of the trace the Gantt chart shows (default 6)")
    a = ap.parse_args()
    if a.gantt_steps < 1:
        sys.exit("nbsgd plot: error: --gantt-steps %d: must be at least 1" % a.gantt_steps)
    d = a.dir
    cj = os.path.join(d, "compare.json")
    out = Out(d)
    if os.path.exists(cj):
        comp = read_json(cj)
        runs = [Run(x["name"], os.path.join(d, x["dir"])) for x in comp["runs"]
                if os.path.exists(os.path.join(d, x["dir"], "metrics.jsonl"))]
        if not runs:
            sys.exit("nbsgd plot: error: %s: compare.json names no run folder with metrics.jsonl" % d)
        groups = {}
        for r in runs:
            groups.setdefault(r.exchange, []).append(r)
        for ex, rs in groups.items():
            loss_chart(out, rs, "t", "loss_vs_time_%s.png" % ex, "Train loss against time: %s" % ex)
            loss_chart(out, rs, "samples", "loss_vs_samples_%s.png" % ex, "Train loss against samples: %s" % ex)
        rates = comp.get("ceiling_rates") or []
        throughput_chart(out, runs, sum(rates) if rates else None)
        for x, r in zip([x for x in comp["runs"] if os.path.exists(os.path.join(d, x["dir"], "metrics.jsonl"))], runs):
            finished_heatmap(out, r, x["dir"])
            if r.trace:
                gantt(out, r, x["dir"], a.gantt_steps)
        out.finish("compare")
    elif os.path.exists(os.path.join(d, "metrics.jsonl")):
        r = Run(os.path.basename(os.path.normpath(d)), d)
        loss_chart(out, [r], "t", "loss_vs_time.png", "Train loss against time: %s" % r.name)
        loss_chart(out, [r], "samples", "loss_vs_samples.png", "Train loss against samples: %s" % r.name)
        throughput_chart(out, [r], r.summary.get("ceiling_samples_per_s"))
        finished_heatmap(out, r, "run")
        if r.trace:
            gantt(out, r, "run", a.gantt_steps)
        out.finish("run")
    else:
        sys.exit("nbsgd plot: error: %s holds neither compare.json nor metrics.jsonl" % d)


if __name__ == "__main__":
    main()
