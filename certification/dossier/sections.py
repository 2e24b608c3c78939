"""The dossier's sections as reportlab flowables, built from the evidence and the filled templates.

Every number printed here is read from the evidence dict; formatting rules are in :func:`num`/:func:`pct`.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Sequence
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import Image, KeepTogether, Paragraph, Spacer, Table, TableStyle

from certification.dossier.layout import GREEN, RED

CONTENT_WIDTH = 495.0
CELL_PADDING = 12.0  # reportlab's default left + right cell padding
HEX = re.compile(r"[0-9a-fA-F]{17,}")
HASH_CHUNK = 16
MIN_FONT_SIZE = 5.0
_BREAK_AFTER = re.compile(r"(?<=[_./\-])")
GRID = colors.HexColor("#b0b0b0")
HEAD = colors.HexColor("#dde7f3")


def num(value: Any, digits: int = 3) -> str:
    """Numbers print with ``digits`` decimals; ints as ints; None as n/a."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.5 * 10 ** -digits:
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    return str(value)


def pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _pack(pieces: Sequence[str], fits) -> list[str]:
    """Greedy lines of consecutive pieces, each line as long as fits (a piece too wide alone is a line)."""
    lines: list[str] = []
    for piece in pieces:
        if lines and fits(lines[-1] + piece):
            lines[-1] += piece
        else:
            lines.append(piece)
    return lines


def fit_token(token: str, font: str, size: float, width: float) -> str:
    """Paragraph markup for one word that must fit ``width`` points: unchanged when it fits; else hashes and other
    long hex strings break only at 16-character chunk boundaries, identifiers only after '_', '.', '/' or '-',
    and a word with no such place is set in a smaller font (never split mid-word)."""
    def fits(text: str, at: float = size) -> bool:
        return stringWidth(text, font, at) <= width

    if fits(token):
        return escape(token)
    if HEX.fullmatch(token):
        pieces = [token[i:i + HASH_CHUNK] for i in range(0, len(token), HASH_CHUNK)]
    else:
        pieces = [p for p in _BREAK_AFTER.split(token) if p]
    lines = _pack(pieces, fits)
    out = []
    for line in lines:
        at = size
        while not fits(line, at) and at > MIN_FONT_SIZE:
            at = max(MIN_FONT_SIZE, at - 0.5)
        out.append(escape(line) if at == size else f'<font size="{at}">{escape(line)}</font>')
    return "<br/>".join(out)


def fitted(text: Any, style: Any, width: float) -> Paragraph:
    """A paragraph whose every word fits ``width`` (see :func:`fit_token`); words are separated by spaces."""
    words = str(text).split(" ")
    return Paragraph(" ".join(fit_token(w, style.fontName, style.fontSize, width) if w else "" for w in words), style)


def bound_text(b: Mapping[str, Any]) -> str:
    """'75.0% (lower 62.6%, upper 84.9%; 36/48, clopper-pearson)'; the upper part only when there is one."""
    upper = f", upper {pct(b['upper'])}" if b.get("upper") is not None else ""
    return f"{pct(b['estimate'])} (lower {pct(b['lower'])}{upper}; {b['successes']}/{b['trials']}, {b.get('method', '')})"


def para(text: Any, style: Any) -> Paragraph:
    return Paragraph(escape(str(text)), style)


def paragraphs(text: str, style: Any) -> list[Paragraph]:
    """Plain text with blank lines as paragraph breaks."""
    return [para(" ".join(block.split()), style) for block in str(text).split("\n\n") if block.strip()]


def bullets(items: Iterable[Any], style: Any) -> list[Paragraph]:
    return [Paragraph(escape(" ".join(str(item).split())), style, bulletText="\u2022") for item in items]


def table(rows: Sequence[Sequence[Any]], widths: Sequence[float], st: Mapping[str, Any], header: bool = True,
          mono_cols: Sequence[int] = (), extra: Sequence[tuple] = ()) -> Table:
    """A ruled table with wrapped cells; ``widths`` are fractions of the content width."""
    total = sum(widths)
    cells = []
    for r, row in enumerate(rows):
        out = []
        for c, value in enumerate(row):
            if not isinstance(value, str):
                out.append(value)
                continue
            style = st["cellbold"] if header and r == 0 else (st["mono"] if c in mono_cols else st["cell"])
            out.append(fitted(value, style, CONTENT_WIDTH * widths[c] / total - CELL_PADDING))
        cells.append(out)
    t = Table(cells, colWidths=[CONTENT_WIDTH * w / total for w in widths], repeatRows=1 if header else 0,
              hAlign="LEFT")
    commands = [("GRID", (0, 0), (-1, -1), 0.4, GRID), ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]
    if header:
        commands.append(("BACKGROUND", (0, 0), (-1, 0), HEAD))
    t.setStyle(TableStyle(commands + list(extra)))
    return t


def key_values(pairs: Sequence[tuple[str, Any]], st: Mapping[str, Any], mono_values: bool = False) -> Table:
    rows = [[k, num(v) if not isinstance(v, str) else v] for k, v in pairs]
    return table(rows, [0.32, 0.68], st, header=False, mono_cols=(1,) if mono_values else ())


def flatten_scalars(obj: Any, prefix: str = "", limit: int = 40) -> list[tuple[str, Any]]:
    """Dotted (key, scalar) pairs of a nested dict, skipping long lists; for metrics of other stages."""
    out: list[tuple[str, Any]] = []
    if isinstance(obj, Mapping):
        for key in sorted(obj):
            out.extend(flatten_scalars(obj[key], f"{prefix}{key}.", limit))
    elif isinstance(obj, list):
        if len(obj) <= 8 and all(not isinstance(v, (dict, list)) for v in obj):
            out.append((prefix[:-1], ", ".join(num(v) for v in obj)))
    else:
        out.append((prefix[:-1], obj))
    return out[:limit]


def image(png: bytes, width: float = CONTENT_WIDTH) -> Image:
    from io import BytesIO

    from PIL import Image as PILImage

    with PILImage.open(BytesIO(png)) as im:
        w, h = im.size
    return Image(BytesIO(png), width=width, height=width * h / w)


def verdict_banner(word: str, st: Mapping[str, Any]) -> Table:
    colour = GREEN if word == "ACCEPTED" else RED
    t = Table([[Paragraph(escape(word), st["verdict"])]], colWidths=[CONTENT_WIDTH], rowHeights=[40])
    t.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colour), ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]))
    return t


def criteria_table(criteria: Sequence[Mapping[str, Any]], st: Mapping[str, Any]) -> Table:
    """The gate's criteria with estimate, bound, requirement and a coloured PASS/FAIL."""
    rows: list[list[Any]] = [["Criterion", "Description", "Estimate", "Bound", "Requirement", "k / n", "Result"]]
    for c in criteria:
        passed = bool(c["passed"])
        colour = "#1b5e20" if passed else "#b00020"
        result = Paragraph(f'<font color="{colour}"><b>{"PASS" if passed else "FAIL"}</b></font>', st["cell"])
        rows.append([c["name"], c["description"], num(c.get("estimate")), f"{num(c['bound'])} ({c['bound_kind']})",
                     f"bound {c['comparison']} {num(c['threshold'])}", f"{c.get('successes', '')} / {c.get('trials', '')}",
                     result])
    return table(rows, [0.18, 0.26, 0.09, 0.13, 0.13, 0.11, 0.1], st)


def spacer(height: float = 4) -> Spacer:
    return Spacer(1, height * mm / 2.83)


def keep(*flowables: Any) -> KeepTogether:
    return KeepTogether(list(flowables))


__all__ = ["fit_token", "fitted", "num", "pct", "para", "paragraphs", "bullets", "table", "key_values", "flatten_scalars", "image",
           "verdict_banner", "criteria_table", "spacer", "keep"]
