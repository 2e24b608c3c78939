"""Page frame of the dossier: styles, header/footer (with the development-key warning), page numbers,
the signatures page with its labelled boxes (at :mod:`certification.signing.layout` positions), and the
outline (bookmarks): one top-level entry per ``title``/``h1`` heading, one child entry per ``h2`` heading.

Every font the PDF names is an embedded DejaVu TrueType subset: the canvas's initial font is DejaVu too,
so reportlab's page preamble does not reference the (non-embedded) standard Helvetica."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.pdfgen import canvas as rl_canvas
from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate, Paragraph

from certification.signing.layout import FIRST_BOX_TOP

DEV_WARNING = "DEVELOPMENT KEY, NOT FOR SUBMISSION"
#: Embedded TrueType fonts (DejaVu, shipped with matplotlib, a locked dependency): they cover Latin, Greek,
#: Cyrillic and many other scripts, so non-Latin class names print as letters, not boxes.
from certification.fonts import FONT, FONT_BOLD, FONT_MONO, font_file  # noqa: E402 (re-exported for the renderer)
#: Outline level of each heading style (a heading of another style gets no bookmark).
OUTLINE_LEVELS = {"title": 0, "h1": 0, "h2": 1}


def register_fonts() -> None:
    """Register the dossier's fonts with reportlab once (from matplotlib's bundled TTF files)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    from reportlab.platypus.tables import CellStyle

    for name in (FONT, FONT_BOLD, FONT_MONO):
        if name not in pdfmetrics.getRegisteredFontNames():
            pdfmetrics.registerFont(TTFont(name, str(font_file(name))))
    # a table selects its cell style's font before drawing each cell, even a Paragraph cell; reportlab's default is
    # the standard (never embedded) Helvetica, which PDF/A forbids: make the default cell font embedded DejaVu
    CellStyle.fontname = FONT
MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM = 50.0, 62.0, 52.0
RED = colors.HexColor("#b00020")
GREEN = colors.HexColor("#1b5e20")
BLUE = colors.HexColor("#1f4e79")


def styles() -> dict[str, ParagraphStyle]:
    register_fonts()
    base = getSampleStyleSheet()
    body = ParagraphStyle("body", parent=base["BodyText"], fontName=FONT, fontSize=9, leading=11.5,
                          spaceAfter=4, bulletFontName=FONT)
    return {
        "title": ParagraphStyle("title", parent=base["Title"], fontName=FONT_BOLD, fontSize=20, leading=24),
        "subtitle": ParagraphStyle("subtitle", parent=body, fontSize=11, leading=14, alignment=TA_CENTER),
        "h1": ParagraphStyle("h1", parent=base["Heading1"], fontName=FONT_BOLD, fontSize=13, leading=16,
                             spaceBefore=8, spaceAfter=5, textColor=BLUE, keepWithNext=1),
        "h2": ParagraphStyle("h2", parent=base["Heading2"], fontName=FONT_BOLD, fontSize=10, leading=13,
                             spaceBefore=6, spaceAfter=3, keepWithNext=1),
        "body": body,
        "small": ParagraphStyle("small", parent=body, fontSize=7.5, leading=9, spaceAfter=2),
        "cell": ParagraphStyle("cell", parent=body, fontSize=7.5, leading=9, spaceAfter=0),
        "cellbold": ParagraphStyle("cellbold", parent=body, fontName=FONT_BOLD, fontSize=7.5, leading=9,
                                   spaceAfter=0),
        "mono": ParagraphStyle("mono", parent=body, fontName=FONT_MONO, fontSize=7, leading=8.5, spaceAfter=0),
        "bullet": ParagraphStyle("bullet", parent=body, leftIndent=12, bulletIndent=2),
        "verdict": ParagraphStyle("verdict", parent=body, fontName=FONT_BOLD, fontSize=24, leading=28,
                                  alignment=TA_CENTER, textColor=colors.white),
    }


def numbered_canvas_class(header: Mapping[str, Any]) -> type:
    """A canvas that writes header and footer on every page once the page count is known."""

    class NumberedCanvas(rl_canvas.Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            register_fonts()
            kwargs["initialFontName"] = kwargs.get("initialFontName") or FONT
            super().__init__(*args, **kwargs)
            self._saved: list[dict[str, Any]] = []
            # bookmarks wait until their page is really emitted (pages are held back for "Page x of y")
            self._page_marks: dict[int, list[tuple[str, dict[str, Any]]]] = {}

        def bookmarkPage(self, key: str, **kwargs: Any) -> None:  # noqa: N802 (reportlab API)
            self._page_marks.setdefault(self._pageNumber, []).append((key, kwargs))

        def showPage(self) -> None:  # noqa: N802 (reportlab API)
            self._saved.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._saved)
            for state in self._saved:
                self.__dict__.update(state)
                for key, kwargs in self._page_marks.get(self._pageNumber, []):
                    super().bookmarkPage(key, **kwargs)
                self._decorate(total)
                super().showPage()
            super().save()

        def _decorate(self, total: int) -> None:
            width, height = A4
            self.saveState()
            self.setStrokeColor(colors.grey)
            self.setLineWidth(0.5)
            self.line(MARGIN_X, height - 44, width - MARGIN_X, height - 44)
            self.line(MARGIN_X, 40, width - MARGIN_X, 40)
            self.setFont(FONT, 7.5)
            self.setFillColor(colors.black)
            self.drawString(MARGIN_X, height - 40, f"{header['document_id']}  {header['title']}")
            self.drawRightString(width - MARGIN_X, height - 40,
                                 f"Rev {header['revision']} | {header['status']} | {header['verdict_word']}")
            self.drawString(MARGIN_X, 30, f"Model SHA-256 {header['model_sha256'][:16]}...  "
                                          f"Evidence time {header['time_utc']}")
            self.drawRightString(width - MARGIN_X, 30, f"Page {self._pageNumber} of {total}")
            if header["development_key"]:
                self.setFillColor(RED)
                self.setFont(FONT_BOLD, 9)
                self.drawCentredString(width / 2, height - 28, DEV_WARNING)
                self.drawCentredString(width / 2, 18, DEV_WARNING)
            self.restoreState()

    return NumberedCanvas


def signature_page_painter(boxes: Mapping[str, tuple[float, float, float, float]],
                           roles: Mapping[str, Mapping[str, str]]) -> Callable[[Any, Any], None]:
    """Draw, on the signatures page, a label above each signature box and the box outline."""

    def paint(canv: Any, doc: Any) -> None:
        canv.saveState()
        for name, (x1, y1, x2, y2) in boxes.items():
            role = roles[name]
            canv.setFillColor(colors.black)
            canv.setFont(FONT_BOLD, 8)
            canv.drawString(x1, y2 + 13, f"Field '{name}': {role['role']}")
            canv.setFont(FONT, 7.5)
            canv.drawString(x1, y2 + 4, f"Meaning: {role['meaning']}")
            canv.setStrokeColor(colors.HexColor("#9e9e9e"))
            canv.setDash(2, 2)
            canv.rect(x1, y1, x2 - x1, y2 - y1, stroke=1, fill=0)
        canv.restoreState()

    return paint


class OutlinedDocTemplate(BaseDocTemplate):
    """A document template that bookmarks every heading paragraph (styles in :data:`OUTLINE_LEVELS`).

    A sub-heading before any top-level heading is promoted to the top level, so the outline never skips a level.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._marks = 0
        self._have_top = False

    def afterFlowable(self, flowable: Any) -> None:  # noqa: N802 (reportlab API)
        if not isinstance(flowable, Paragraph):
            return
        level = OUTLINE_LEVELS.get(flowable.style.name)
        if level is None:
            return
        if level == 0:
            self._have_top = True
        elif not self._have_top:
            level = 0
        self._marks += 1
        key = f"heading-{self._marks}"
        frame = getattr(self, "frame", None)
        top = frame._y + flowable.height + flowable.style.spaceBefore if frame is not None else None
        self.canv.bookmarkPage(key, fit="XYZ", left=0, top=top, zoom=0)
        self.canv.addOutlineEntry(flowable.getPlainText().strip(), key, level=level, closed=level > 0)
        self.canv.showOutline()


def document_template(buffer: Any, title: str, author: str, paint_signatures: Callable[[Any, Any], None]) -> BaseDocTemplate:
    """A4 document with a 'body' page template and a 'signatures' template whose frame ends above the boxes;
    its headings become the PDF outline (see :class:`OutlinedDocTemplate`)."""
    width, height = A4
    doc = OutlinedDocTemplate(buffer, pagesize=A4, leftMargin=MARGIN_X, rightMargin=MARGIN_X, topMargin=MARGIN_TOP,
                          bottomMargin=MARGIN_BOTTOM, title=title, author=author, subject="Certified robustness dossier",
                          creator="smoothcert", invariant=1, pageCompression=1, initialFontName=FONT)
    body = Frame(MARGIN_X, MARGIN_BOTTOM, width - 2 * MARGIN_X, height - MARGIN_TOP - MARGIN_BOTTOM, id="body")
    sig_bottom = FIRST_BOX_TOP + 30
    sig_frame = Frame(MARGIN_X, sig_bottom, width - 2 * MARGIN_X, height - MARGIN_TOP - sig_bottom, id="sig")
    doc.addPageTemplates([PageTemplate(id="body", frames=[body]),
                          PageTemplate(id="signatures", frames=[sig_frame], onPage=paint_signatures)])
    return doc
