"""The HTML report of a demo run root: one self-contained file (PNG images embedded as base64, inline
CSS, no script, no link out of the page). Each section whose inputs are missing says so."""

from __future__ import annotations

import base64
import re
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from clareps.config import override
from clareps.io import write_bytes, write_text
from clareps.report import sections as S
from clareps.report import student_sections as E
from clareps.report import upstream_sections as T
from clareps.report.context import Missing, ReportContext
from clareps.report.html_parts import esc

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f;
       max-width: 1180px; margin: 24px auto; padding: 0 20px; }
h1 { font-size: 26px; margin-bottom: 4px; } h2 { font-size: 20px; margin-top: 36px;
     border-bottom: 1px solid #ddd; padding-bottom: 4px; } h3 { font-size: 15px; margin: 16px 0 6px; }
code { font-size: 13px; background: #f3f3f5; padding: 1px 4px; border-radius: 3px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13.5px; }
th, td { border: 1px solid #d8d8dc; padding: 3px 8px; } th { background: #f3f3f5; text-align: left; }
table.num td:not(:first-child), table.num th:not(:first-child) { text-align: right; white-space: nowrap; }
img { max-width: 100%; height: auto; display: block; margin: 6px 0; }
img.pixelated { image-rendering: pixelated; }
.warn { background: #fff4d6; border: 1px solid #e0b84a; padding: 10px 14px; border-radius: 6px; }
.note { background: #eef6ee; border: 1px solid #9cc59c; padding: 10px 14px; border-radius: 6px; }
.missing { color: #6b6b70; font-style: italic; }
.error { color: #a1001a; }
.small { font-size: 13px; color: #3a3a3f; }
.row { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
.row > div { flex: 0 0 auto; max-width: 100%; } .row > div.text { flex: 1 1 320px; }
.row > div.figure { width: min-content; } .row > div.figure img { max-width: none; }
nav { font-size: 13.5px; } nav a { margin-right: 10px; }
details summary { cursor: pointer; font-size: 13.5px; margin: 6px 0; }
"""


def _sections(ctx: ReportContext, report_cfg: dict) -> list[tuple[str, str, Callable[[], str]]]:
    per_class = int(report_cfg.get("per_class", 8))
    return [
        ("results", "Results: mean ± std over seeds", lambda: S.results_table(ctx)),
        ("data", "The data set", lambda: T.data_section(ctx, per_class)),
        ("teacher", "Teacher samples per class", lambda: T.teacher_samples_section(ctx, per_class)),
        ("banks", "Originals | control | canonical, and singular-value spectra",
         lambda: T.banks_section(ctx, per_class)),
        ("features", "Canonical vs control vs input features", lambda: T.features_section(
            ctx, report_cfg.get("embedding", "auto"))),
        ("terms", "Loss terms while training", lambda: E.terms_section(ctx)),
        ("robust", "Robust accuracy vs budget", lambda: E.robust_section(ctx)),
        ("corruptions", "Corruption accuracy per type", lambda: E.corruption_section(ctx)),
        ("background", "Background tests", lambda: E.background_section(ctx)),
        ("saliency", "Saliency: where each student looks",
         lambda: E.saliency_section(ctx, int(report_cfg.get("overlays", 6)))),
        ("compute", "Compute", lambda: S.compute_section(ctx)),
    ]


def _render(make: Callable[[], str], problems: list[str], title: str) -> str:
    try:
        return make()
    except Missing as why:
        return f'<p class="missing">Not available: {esc(why)}</p>'
    except Exception as exc:  # a broken section must not take the rest of the page with it
        problems.append(f"{title}: {type(exc).__name__}: {exc}")
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return f'<p class="error">This section could not be rendered: {esc(detail)}</p>'


def render_report(run_root: str | Path, embedding: str | None = None) -> tuple[str, list[str]]:
    """The page's HTML, and the sections that failed (not merely missing inputs); ``embedding`` overrides
    the run's report.embedding (auto | umap | tsne | pca)."""
    ctx = ReportContext(run_root)
    problems: list[str] = []
    report_cfg = override(ctx.cfg.get("report") or {}, {"embedding": embedding} if embedding else {})
    parts = _sections(ctx, report_cfg)
    body = [f"<h1>clareps: CaDistill and its baselines</h1>"
            f"<p class='small'>Run root <code>{esc(Path(run_root))}</code>; page made "
            f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by <code>clareps report</code>.</p>",
            _render(lambda: S.teacher_box(ctx), problems, "teacher"),
            _render(lambda: S.run_facts(ctx), problems, "run"),
            "<nav>" + "".join(f'<a href="#{sid}">{esc(title.split(":")[0])}</a>' for sid, title, _ in parts) + "</nav>"]
    for sid, title, make in parts:
        body.append(f'<h2 id="{sid}">{esc(title)}</h2>' + _render(make, problems, title))
    html = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>clareps report: {esc(Path(run_root).name)}</title><style>{CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")
    return html, problems


def build_report(run_root: str | Path, out: str | Path | None = None, warn: bool = True,
                 figures: str | Path | None = None, embedding: str | None = None) -> Path:
    """Write the report of ``run_root`` (default: RUN_ROOT/report.html) and return its path; with ``figures``,
    each of its images also as a PNG file there (``<section>-<n>.png``)."""
    out = Path(out) if out is not None else Path(run_root) / "report.html"
    html, problems = render_report(run_root, embedding)
    if warn:
        for p in problems:
            print(f"warning: report section {p}", file=sys.stderr)
    if figures is not None:
        export_figures(html, Path(figures))
    return write_text(out, html)


def export_figures(html: str, folder: Path) -> list[Path]:
    """The page's embedded PNGs as files, named by the section they sit in and their order there."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, counts, section = [], {}, "top"
    for m in re.finditer(r'<h2 id="([^"]+)">|src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html):
        if m.group(1):
            section = m.group(1)
            continue
        counts[section] = counts.get(section, 0) + 1
        paths.append(write_bytes(folder / f"{section}-{counts[section]}.png", base64.b64decode(m.group(2))))
    return paths
