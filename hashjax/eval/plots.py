"""PNG figures with matplotlib, without a display: line, bar and scatter panels from dicts.

Figures are built on `matplotlib.figure.Figure` directly and saved through the Agg renderer,
so nothing here touches pyplot's global state or its backend, and no display is ever needed. The generic helpers take plain
dicts and are what other papers' figures should reuse; the Denton figures below are thin
layouts on top of them (Figure 5: precision-recall panels; Figure 6: recall-at-10 bars;
Figure 7: t-SNE scatter; Table 6 as diverging bars). Veit et al.'s figures are laid out by
hashjax/tools/veit_figures.py directly on bar_panels, line_panels and bucket_lines.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

from matplotlib.figure import Figure
import numpy as np

# One colour per model, in the order models are given (bilinear, user-biased, 3-way).
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#7f7f7f")


def grid(num_panels: int, ncols: int, panel_size=(4.0, 3.0)):
  """A figure with num_panels axes on a grid of ncols columns; unused cells are hidden."""
  ncols = max(1, min(ncols, num_panels))
  nrows = math.ceil(num_panels / ncols)
  fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), dpi=100)
  axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
  for ax in axes[num_panels:]:
    ax.set_visible(False)
  return fig, axes[:num_panels]


def save(fig, path: str, title: str | None = None, rect=(0, 0, 1, 1)) -> str:
  """Writes the figure as PNG (creating the directory); returns the path. rect: the part of
  the figure the panels may fill (room for a figure legend)."""
  if title:
    fig.suptitle(title)
  fig.tight_layout(rect=rect)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, format="png")
  return path


def line_panels(path: str, panels: Sequence[dict], *, ncols: int = 4, xlabel: str = "",
                ylabel: str = "", xlim=None, ylim=None, title: str | None = None,
                reference: str | None = None, panel_size=(4.0, 3.0), markers: bool = False,
                xscale: str | None = None) -> str:
  """One panel per dict {"title", "lines": {label: (x, y)}, optional "errors": {label: yerr}
  (drawn as error bars)}; a label keeps its colour in every panel (first-seen order), and the
  `reference` label (a ceiling, a baseline) is a dashed grey line. The legend is drawn once, in
  the first panel. markers: a dot at every point; xscale: e.g. "log" (matplotlib's names),
  ticked at the points' x values."""
  fig, axes = grid(len(panels), ncols, panel_size)
  labels = [label for label in dict.fromkeys(label for p in panels for label in p["lines"])
            if label != reference]
  for ax, panel in zip(axes, panels):
    for label, (x, y) in panel["lines"].items():
      if label == reference:
        ax.plot(x, y, color="#555555", ls="--", lw=1.0, label=label)
      elif label in panel.get("errors", {}):  # mean ± std: error bars at the points
        ax.errorbar(x, y, yerr=panel["errors"][label], color=COLOURS[labels.index(label) %
                    len(COLOURS)], label=label, lw=1.5, marker="o", ms=4, capsize=3)
      else:
        ax.plot(x, y, color=COLOURS[labels.index(label) % len(COLOURS)], label=label, lw=1.5,
                marker="o" if markers else None, ms=4)
    ax.set_title(panel["title"], fontsize=10)
    if xscale:  # ticks at the points' x values, written out (1, 8, 64; not 10^0)
      ax.set_xscale(xscale)
      ticks = sorted({float(v) for x, _ in panel["lines"].values() for v in x})
      ax.set_xticks(ticks)
      ax.set_xticklabels([f"{t:g}" for t in ticks])
      ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if xlim:
      ax.set_xlim(*xlim)
    if ylim:
      ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
  if len(axes):
    axes[0].legend(fontsize=8)
  return save(fig, path, title)


def bar_panels(path: str, panels: Sequence[dict], *, ncols: int = 1, ylabel: str = "",
               ylim=None, title: str | None = None, panel_size=(12.0, 3.2)) -> str:
  """Grouped bars: one panel per dict {"title", "labels": [x tick], "series": {name: values},
  optional "errors": {name: yerr} (error bars)}, one bar per series at each tick (a series keeps
  its colour in every panel)."""
  fig, axes = grid(len(panels), ncols, panel_size)
  names = list(dict.fromkeys(name for p in panels for name in p["series"]))
  for ax, panel in zip(axes, panels):
    x = np.arange(len(panel["labels"]))
    width = 0.8 / max(1, len(panel["series"]))
    for j, (name, values) in enumerate(panel["series"].items()):
      ax.bar(x + (j - (len(panel["series"]) - 1) / 2) * width, values, width,
             yerr=panel.get("errors", {}).get(name), capsize=3,
             color=COLOURS[names.index(name) % len(COLOURS)], label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(panel["labels"], rotation=60, ha="right", fontsize=8)
    ax.set_title(panel["title"], fontsize=10)
    ax.set_ylabel(ylabel)
    if ylim:
      ax.set_ylim(*ylim)
    ax.grid(axis="y", alpha=0.3)
  if len(axes):
    axes[0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars
  return save(fig, path, title)


def diverging_bar_panels(path: str, panels: Sequence[dict], *, ncols: int = 3,
                         xlabel: str = "", legend: dict[str, str] | None = None,
                         title: str | None = None) -> str:
  """Horizontal bars around 0, first label on top: one panel per dict {"title", "labels",
  "values", "colours" (one per bar), "sides": (name of the negative side, of the positive
  side)}; legend: {label: colour}, drawn once below the panels."""
  height = 0.25 * max(len(p["labels"]) for p in panels) + 1.4
  fig, axes = grid(len(panels), ncols, (4.6, height))
  for ax, panel in zip(axes, panels):
    y = np.arange(len(panel["labels"]))[::-1]
    ax.barh(y, panel["values"], color=panel["colours"])
    ax.set_yticks(y)
    ax.set_yticklabels(panel["labels"], fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_title(panel["title"], fontsize=10)
    left, right = panel.get("sides", ("", ""))
    ax.set_xlabel(f"← {left}    {xlabel}    {right} →" if left or right else xlabel, fontsize=8)
    ax.grid(axis="x", alpha=0.3)
  rect = (0, 0, 1, 1)
  if legend and len(axes):
    from matplotlib.patches import Patch
    fig.legend(handles=[Patch(color=c, label=k) for k, c in legend.items()],
               loc="lower center", ncol=len(legend), fontsize=8)
    rect = (0, 0.35 / fig.get_figheight(), 1, 1)
  return save(fig, path, title, rect)


def scatter_panels(path: str, points, colourings: Sequence[dict], *, ncols: int = 2,
                   title: str | None = None, size: float = 8.0) -> str:
  """The same 2-D points once per colouring {"title", "values", and "categories": names of the
  integer codes 0..C-1 for a categorical attribute (legend), or none for a colour bar}."""
  points = np.asarray(points)
  fig, axes = grid(len(colourings), ncols, (5.0, 4.2))
  for ax, colouring in zip(axes, colourings):
    values = np.asarray(colouring["values"])
    categories = colouring.get("categories")
    if categories is not None:
      for code, name in enumerate(categories):
        sel = values == code
        if sel.any():
          ax.scatter(points[sel, 0], points[sel, 1], s=size, color=COLOURS[code % len(COLOURS)],
                     label=f"{name} ({int(sel.sum())})", alpha=0.8, linewidths=0)
      ax.legend(fontsize=7, markerscale=2)
    else:
      art = ax.scatter(points[:, 0], points[:, 1], s=size, c=values,
                       cmap=colouring.get("cmap", "viridis"), alpha=0.8, linewidths=0)
      fig.colorbar(art, ax=ax)
    ax.set_title(colouring["title"], fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
  return save(fig, path, title)


def bucket_lines(path: str, labels: Sequence[str], series: dict[str, Sequence[float]], counts,
                 *, xlabel: str = "", ylabel: str = "", count_label: str = "", ylim=None,
                 title: str | None = None) -> str:
  """A metric per bucket: one line with markers per series over the buckets (categorical x,
  in the given order; NaN, an empty bucket, leaves a gap) in front of the buckets' sizes
  `counts`, grey bars on the right-hand axis, each labelled with its number."""
  fig, axes = grid(1, 1, (max(6.0, 0.7 * len(labels) + 2.5), 4.2))
  ax = axes[0]
  x = np.arange(len(labels))
  sizes = ax.twinx()
  sizes.bar(x, counts, 0.6, color="#dddddd")
  for xi, c in zip(x, counts):
    sizes.annotate(f"{int(c)}", (xi, c), ha="center", va="bottom", fontsize=7, color="#666666")
  sizes.set_ylabel(count_label, color="#666666")
  ax.set_zorder(sizes.get_zorder() + 1)  # the lines in front of the bars
  ax.patch.set_visible(False)
  for j, (name, values) in enumerate(series.items()):
    ax.plot(x, values, marker="o", color=COLOURS[j % len(COLOURS)], label=name, lw=1.5)
  ax.set_xticks(x)
  ax.set_xticklabels(labels, rotation=45 if len(labels) > 8 else 0, fontsize=8,
                     ha="right" if len(labels) > 8 else "center")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if ylim:
    ax.set_ylim(*ylim)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return save(fig, path, title)


# ----------------------------------------------------------------------------------------------
# Denton et al.'s figures.


def pr_figure(path: str, curves: dict[str, list[dict]], tag_titles: Sequence[str], *,
              title: str | None = None, reference: str | None = None) -> str:
  """Figure 5: one panel per hashtag, one precision-recall line per model (APs in the panel
  title, in the order of `curves`); `reference` names a dashed ceiling line (the oracle).

  curves: {model: [analysis.pr_curves entry per hashtag]} with hashtags in tag_titles' order.
  """
  panels = []
  for t, tag_title in enumerate(tag_titles):
    lines = {model: (c[t]["recall"], c[t]["precision"]) for model, c in curves.items()}
    aps = ", ".join(f"{c[t]['ap']:.2f}" for c in curves.values())
    panels.append({"title": f"{tag_title}\nAP {aps}", "lines": lines})
  return line_panels(path, panels, ncols=4, xlabel="recall", ylabel="precision",
                     xlim=(0, 1), ylim=(0, 1.02), title=title, reference=reference)


def recall_figure(path: str, subsets: dict[str, Sequence[str]],
                  recalls: dict[str, dict[str, Sequence[float]]], *,
                  title: str | None = None) -> str:
  """Figure 6: one bar panel per hashtag subset, one bar per model.

  subsets: {panel title: tag labels}; recalls: {panel title: {model: R@10 per tag}}.
  """
  panels = [{"title": name, "labels": list(labels), "series": recalls[name]}
            for name, labels in subsets.items()]
  return bar_panels(path, panels, ylabel="R@10", ylim=(0, 1), title=title)


def tsne_figure(path: str, points, attributes: dict, *, title: str | None = None) -> str:
  """Figure 7: the t-SNE map coloured by each attribute.

  attributes: {"age": ages, "gender": codes, "gender_names": [...], "country": codes,
  "country_names": [...], "longitude": degrees}.
  """
  colourings = [
      {"title": "age", "values": attributes["age"], "cmap": "viridis"},
      {"title": "gender", "values": attributes["gender"],
       "categories": attributes["gender_names"]},
      {"title": "country", "values": attributes["country"],
       "categories": attributes["country_names"]},
      {"title": "home longitude (degrees)", "values": attributes["longitude"],
       "cmap": "twilight"},
  ]
  return scatter_panels(path, points, colourings, ncols=2, title=title)
