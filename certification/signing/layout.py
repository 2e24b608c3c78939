"""Where the signature boxes sit on the signatures page (the last page of the dossier).

The renderer draws labelled frames at these rectangles and the signer places the signature widgets on
them, so both import this module. Coordinates are PDF points on an A4 page, origin bottom-left.
"""
from __future__ import annotations

from certification.errors import InputError

AUTHOR_FIELD = "author"
PAGE_WIDTH, PAGE_HEIGHT = 595.2756, 841.8898  # A4 in points
BOX_LEFT = 60.0
BOX_WIDTH = 475.0
BOX_HEIGHT = 66.0
FIRST_BOX_TOP = 600.0
BOX_PITCH = 92.0  # vertical distance between the tops of consecutive boxes (leaves room for a label)
MAX_APPROVAL_FIELDS = 5

Box = tuple[float, float, float, float]


def signature_boxes(approval_fields: list[str] | tuple[str, ...]) -> dict[str, Box]:
    """Rectangles (x1, y1, x2, y2) for the author field followed by each approval field, in order."""
    names = [AUTHOR_FIELD, *approval_fields]
    if len(approval_fields) > MAX_APPROVAL_FIELDS:
        raise InputError(f"at most {MAX_APPROVAL_FIELDS} approval fields fit on the signatures page, "
                         f"got {len(approval_fields)}")
    if len(set(names)) != len(names):
        raise InputError(f"signature field names must be unique and differ from '{AUTHOR_FIELD}': {names}")
    for name in names:
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise InputError(f"signature field name {name!r} must be letters, digits, '-' or '_'")
    boxes: dict[str, Box] = {}
    for i, name in enumerate(names):
        top = FIRST_BOX_TOP - i * BOX_PITCH
        boxes[name] = (BOX_LEFT, top - BOX_HEIGHT, BOX_LEFT + BOX_WIDTH, top)
    return boxes
