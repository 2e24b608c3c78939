"""The TrueType fonts every PDF the product writes embeds: DejaVu, shipped inside matplotlib (a locked dependency),
so nothing is downloaded and PDF/A's "every font embedded" holds for the dossier and its signature stamps."""
from __future__ import annotations

from pathlib import Path

FONT, FONT_BOLD, FONT_MONO = "DejaVuSans", "DejaVuSans-Bold", "DejaVuSansMono"


def font_file(name: str) -> Path:
    """The .ttf file of font ``name`` (one of FONT, FONT_BOLD, FONT_MONO) in matplotlib's data folder."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / f"{name}.ttf"
