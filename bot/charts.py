"""The /stats chart: one PNG with four panels (status, category, rectification rate by grid,
new cases per day), drawn with matplotlib's Agg backend.

`render_png` is synchronous and CPU-bound: callers run it with `asyncio.to_thread` so the
event loop keeps serving other chats meanwhile. matplotlib is imported on the first chart, not
when the bot starts (it costs about half a second). Chinese labels need a CJK font; when none is
installed the chart falls back to English labels (and area ids) rather than drawing tofu
boxes.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

WIDTH_IN, HEIGHT_IN, DPI = 10.0, 7.0, 100  # → 1000 × 700 pixels
SIZE = (int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI))
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN", "WenQuanYi Micro Hei",
                "WenQuanYi Zen Hei", "Noto Serif CJK SC", "AR PL UMing CN", "SimHei", "Microsoft YaHei",
                "PingFang SC", "Heiti SC", "Droid Sans Fallback")

_lock = threading.Lock()  # pyplot's state is global: one chart at a time


@dataclass
class Label:
    """A label in both forms: the Chinese one, and the one used without a CJK font."""

    zh: str
    en: str

    def pick(self, cjk: bool) -> str:
        return self.zh if cjk else self.en


@dataclass
class ChartData:
    title: Label
    by_status: list[tuple[Label, int]] = field(default_factory=list)
    by_category: list[tuple[Label, int]] = field(default_factory=list)
    grid_rates: list[tuple[Label, float]] = field(default_factory=list)  # 0..1, lowest first
    per_day: list[tuple[date, int]] = field(default_factory=list)
    overdue: int = 0
    panel_titles: dict[str, Label] = field(default_factory=dict)


def _matplotlib():
    # matplotlib takes a second to import: only /stats charts need it (the bot starts without it)
    import matplotlib

    matplotlib.use("Agg")
    return matplotlib


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The family name of an installed CJK font, or None."""
    _matplotlib()
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    for fam in CJK_FAMILIES:
        if fam in installed:
            return fam
    for f in font_manager.fontManager.ttflist:  # any font that says it covers Chinese
        if any(k in f.name for k in ("CJK", "Hei", "Song", "Ming", "Kai", "WenQuanYi")):
            return f.name
    # installed after matplotlib cached its font list: register the file directly
    for path in font_manager.findSystemFonts():
        if any(k in path.lower() for k in ("wqy", "cjk", "microhei", "zenhei")):
            try:
                font_manager.fontManager.addfont(path)
                return font_manager.FontProperties(fname=path).get_name()
            except (OSError, RuntimeError, ValueError):
                continue
    return None


def render_png(data: ChartData, *, lang: str = "zh") -> bytes:
    """The chart as PNG bytes, SIZE pixels."""
    matplotlib = _matplotlib()
    from matplotlib.figure import Figure

    font = cjk_font()
    cjk = lang != "en" and font is not None
    with _lock:
        fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
        family = [font, "DejaVu Sans"] if cjk else ["DejaVu Sans"]
        with matplotlib.rc_context({"font.family": family, "axes.unicode_minus": False}):
            _draw(fig, data, cjk)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _title(data: ChartData, key: str, default: str, cjk: bool) -> str:
    lab = data.panel_titles.get(key)
    return lab.pick(cjk) if lab else default


def _draw(fig, data: ChartData, cjk: bool) -> None:
    axes = fig.subplots(2, 2)
    fig.suptitle(data.title.pick(cjk), fontsize=14)
    colors = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7"]

    ax = axes[0][0]
    labels = [lab.pick(cjk) for lab, _ in data.by_status]
    values = [v for _, v in data.by_status]
    ax.bar(range(len(values)), values, color=colors[: len(values)] or None)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_title(_title(data, "status", "By status", cjk), fontsize=10)
    _counts_on_bars(ax, values)

    ax = axes[0][1]
    top = data.by_category[:8]
    labels = [lab.pick(cjk) for lab, _ in top]
    values = [v for _, v in top]
    ax.barh(range(len(values)), values, color="#4e79a7")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_title(_title(data, "category", "By category", cjk), fontsize=10)

    ax = axes[1][0]
    rates = data.grid_rates[:10]
    labels = [lab.pick(cjk) for lab, _ in rates]
    values = [r * 100 for _, r in rates]
    ax.barh(range(len(values)), values, color=["#e15759" if v < 80 else "#59a14f" for v in values])
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("%", fontsize=8)
    ax.set_title(_title(data, "grid", "Rectification rate by grid", cjk), fontsize=10)

    ax = axes[1][1]
    days = [d for d, _ in data.per_day]
    values = [v for _, v in data.per_day]
    ax.plot(range(len(values)), values, marker="o", markersize=3, color="#f28e2b")
    step = max(1, len(days) // 7)
    ax.set_xticks(range(0, len(days), step), [d.strftime("%m-%d") for d in days][::step], fontsize=8)
    ax.set_ylim(bottom=0)
    ax.set_title(_title(data, "trend", "New cases per day", cjk), fontsize=10)
    for a in (axes[0][0], axes[0][1], axes[1][0], axes[1][1]):
        a.tick_params(labelsize=8)
        a.spines[["top", "right"]].set_visible(False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))


def _counts_on_bars(ax, values: list[int]) -> None:
    for i, v in enumerate(values):
        ax.text(i, v, str(v), ha="center", va="bottom", fontsize=8)
