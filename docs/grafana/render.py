#!/usr/bin/env python3
"""Draws docs/grafana/dashboard.png: the panels of packaging/grafana/kes-dashboard.json, laid out
on Grafana's 24-column grid, from the query results in docs/grafana/capture.json.

This is not a Grafana screenshot (Grafana cannot be installed from the registries this project
uses). Every number in the picture was computed by a real Prometheus evaluating the dashboard's
own queries over metrics it scraped from a real kes server (see capture.py); this script only
draws them, in the dashboard's layout, panel types, units and legends.

Needs matplotlib (pip install matplotlib). Usage:
    python3 docs/grafana/render.py [--capture docs/grafana/capture.json] [--out docs/grafana/dashboard.png]
"""

import argparse
import datetime
import json
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BG, PANEL, BORDER, TEXT, MUTED, GRID = "#111217", "#181b1f", "#2c3235", "#ccccdc", "#8e8e9e", "#24292e"
PALETTE = ["#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9", "#705DA0",
           "#37872D", "#FADE2A", "#447EBC", "#C15C17"]
UNIT_PX, ROW_PX, WIDTH_PX = 75, 36, 24 * 75


def fmt(value, unit):
    """A value as Grafana would show it in `unit`."""
    if value != value:  # NaN
        return "-"
    a = abs(value)
    if unit == "s":
        for scale, suffix in ((1, " s"), (1e-3, " ms"), (1e-6, " µs"), (1e-9, " ns")):
            if a >= scale or scale == 1e-9:
                if a >= 60 and scale == 1:
                    return "%.0f min" % (value / 60) if a >= 600 else "%.1f min" % (value / 60)
                return ("%.3g" % (value / scale)) + suffix
    if unit == "bytes":
        for scale, suffix in ((2**30, " GiB"), (2**20, " MiB"), (2**10, " KiB"), (1, " B")):
            if a >= scale or scale == 1:
                return ("%.3g" % (value / scale)) + suffix
    if unit == "percentunit":
        return "%.1f%%" % (value * 100)
    suffix = {"reqps": " req/s", "ops": " ops/s", "cps": " c/s"}.get(unit, "")
    if a >= 1e6:
        return "%.3gM%s" % (value / 1e6, suffix)
    if a >= 1e3:
        return "%.3gK%s" % (value / 1e3, suffix)
    if a == int(a):
        return "%d%s" % (value, suffix)
    return "%.3g%s" % (value, suffix)


def legend(fmt_string, labels):
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt_string).strip()
    return text or "{" + ", ".join("%s=%s" % kv for kv in sorted(labels.items())) + "}"


def series_of(panel_data):
    """[(legend, [t], [v])] of every series of every target of a panel."""
    out = []
    for target in panel_data["targets"]:
        for s in target["series"]:
            labels = {k: v for k, v in s["metric"].items() if k not in ("instance", "job")}
            ts = [float(t) for t, _ in s["values"]]
            vs = [float(v) for _, v in s["values"]]
            out.append((legend(target["legend"], labels), ts, vs))
    return out


def panel_box(fig, gp, top_px):
    x = gp["x"] * UNIT_PX
    y = top_px + gp["y"] * ROW_PX
    w, h = gp["w"] * UNIT_PX, gp["h"] * ROW_PX
    H = fig.get_size_inches()[1] * fig.dpi
    pad = 4
    return [(x + pad) / WIDTH_PX, 1 - (y + h - pad) / H, (w - 2 * pad) / WIDTH_PX, (h - 2 * pad) / H]


def draw_frame(fig, rect, title):
    bg = FancyBboxPatch((rect[0], rect[1]), rect[2], rect[3], boxstyle="round,pad=0,rounding_size=0.002",
                        transform=fig.transFigure, facecolor=PANEL, edgecolor=BORDER, linewidth=0.8, zorder=-1)
    fig.patches.append(bg)
    H = fig.get_size_inches()[1] * fig.dpi
    fig.text(rect[0] + 8 / WIDTH_PX, rect[1] + rect[3] - 8 / H, title, color=TEXT, fontsize=10,
             fontweight="bold", va="top", ha="left")


def draw_stat(fig, rect, panel, data):
    draw_frame(fig, rect, panel["title"])
    unit = panel["fieldConfig"]["defaults"].get("unit", "short")
    series = series_of(data)
    value = float("nan")
    color = PALETTE[0]
    if series and series[0][2]:
        value = series[0][2][-1]
    steps = panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])
    for step in steps:
        if step["value"] is None or value >= step["value"]:
            color = {"green": "#73BF69", "red": "#F2495C"}.get(step["color"], step["color"])
    text = fmt(value, unit)
    for mapping in panel["fieldConfig"]["defaults"].get("mappings", []):
        m = mapping.get("options", {}).get("%d" % value if value == value else "")
        if m:
            text = m["text"]
            color = {"green": "#73BF69", "red": "#F2495C"}.get(m["color"], m["color"])
    if series and len(series[0][1]) > 1:
        ax = fig.add_axes([rect[0], rect[1], rect[2], rect[3] * 0.45])
        ax.fill_between(series[0][1], series[0][2], color=color, alpha=0.18, linewidth=0)
        ax.plot(series[0][1], series[0][2], color=color, linewidth=1, alpha=0.6)
        ax.set_axis_off()
        ax.set_xlim(series[0][1][0], series[0][1][-1])
        ax.set_ylim(bottom=min(0, min(series[0][2])))
    fig.text(rect[0] + rect[2] / 2, rect[1] + rect[3] * 0.45, text, color=color, fontsize=22,
             fontweight="bold", ha="center", va="center")


def draw_timeseries(fig, rect, panel, data, start, end):
    draw_frame(fig, rect, panel["title"])
    unit = panel["fieldConfig"]["defaults"].get("unit", "short")
    stacked = panel["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    series = [s for s in series_of(data) if s[1]]
    H = fig.get_size_inches()[1] * fig.dpi
    legend_rows = max(1, (len(series) + 3) // 4)
    top_pad, bottom_pad = 28 / H, (22 + 14 * legend_rows) / H
    ax = fig.add_axes([rect[0] + 62 / WIDTH_PX, rect[1] + bottom_pad, rect[2] - 72 / WIDTH_PX,
                       rect[3] - top_pad - bottom_pad])
    ax.set_facecolor(PANEL)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.grid(True, color=GRID, linewidth=0.6)
    ax.tick_params(colors=MUTED, labelsize=7, length=0)
    base = {}
    for i, (name, ts, vs) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        if stacked:
            lower = [base.get(t, 0.0) for t in ts]
            upper = [lo + (v if v == v else 0.0) for lo, v in zip(lower, vs)]
            for t, u in zip(ts, upper):
                base[t] = u
            ax.fill_between(ts, lower, upper, color=color, alpha=0.25, linewidth=0)
            ax.plot(ts, upper, color=color, linewidth=1.1, label=name)
        else:
            ax.fill_between(ts, vs, color=color, alpha=0.08, linewidth=0)
            ax.plot(ts, vs, color=color, linewidth=1.1, label=name)
    ax.set_xlim(start, end)
    if panel["fieldConfig"]["defaults"].get("min") == 0:
        ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, unit)))
    ax.xaxis.set_major_locator(MaxNLocator(6, prune="both"))
    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda v, _: datetime.datetime.fromtimestamp(v, datetime.timezone.utc).strftime("%H:%M:%S")))
    if not series:
        ax.text(0.5, 0.5, "No data", color=MUTED, transform=ax.transAxes, ha="center", va="center")
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(0, -0.1), ncol=4, frameon=False, fontsize=7,
                  labelcolor=TEXT, handlelength=1.2, columnspacing=1.2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dashboard", default=os.path.join(ROOT, "packaging", "grafana", "kes-dashboard.json"))
    ap.add_argument("--capture", default=os.path.join(HERE, "capture.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "dashboard.png"))
    args = ap.parse_args()
    dashboard = json.load(open(args.dashboard))
    capture = json.load(open(args.capture))
    data = {p["id"]: p for p in capture["panels"]}
    header_px = 84
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    height_px = header_px + rows * ROW_PX + 10
    dpi = 100
    fig = plt.figure(figsize=(WIDTH_PX / dpi, height_px / dpi), dpi=dpi, facecolor=BG)
    when = datetime.datetime.fromtimestamp(capture["start"], datetime.timezone.utc)
    fig.text(12 / WIDTH_PX, 1 - 14 / height_px, dashboard["title"], color=TEXT, fontsize=16,
             fontweight="bold", va="top")
    fig.text(12 / WIDTH_PX, 1 - 42 / height_px,
             "Rendering of packaging/grafana/kes-dashboard.json, not a Grafana screenshot: every value was "
             "computed by %s\nevaluating the dashboard's own queries over metrics it scraped every 2 s from a "
             "real kes server during a %.0f-minute scripted run on %s UTC (docs/grafana/capture.py)."
             % (capture.get("prometheus", "Prometheus"), (capture["end"] - capture["start"]) / 60,
                when.strftime("%Y-%m-%d %H:%M")),
             color=MUTED, fontsize=9, va="top")
    for panel in dashboard["panels"]:
        rect = panel_box(fig, panel["gridPos"], header_px)
        if panel["type"] == "row":
            fig.text(rect[0] + 2 / WIDTH_PX, rect[1] + rect[3] / 2, panel["title"], color=TEXT, fontsize=12,
                     fontweight="bold", va="center")
        elif panel["type"] == "stat":
            draw_stat(fig, rect, panel, data[panel["id"]])
        elif panel["type"] == "timeseries":
            draw_timeseries(fig, rect, panel, data[panel["id"]], capture["start"], capture["end"])
    fig.savefig(args.out, facecolor=BG)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
