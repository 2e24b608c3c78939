"""Atomic file output and content hashing.

Every output the library writes goes through :func:`atomic_output`: the data lands in a temporary file in
the destination folder and is renamed over the destination only when complete, so a crash or a bad input
never leaves a half-written file behind.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

_CHUNK = 1 << 20
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """SHA-256 hex digest of bytes."""
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    ``suffix`` is kept on the temporary name for writers that infer the format from it (np.savez, plots).
    """
    from certification.errors import InputError

    target = Path(path)
    try:
        is_dir = target.is_dir()
    except OSError:  # e.g. a name too long for the file system: reported by the write below
        is_dir = False
    if is_dir:
        raise InputError(f"{target} is a directory; give a file name for this output")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name[:120]}.", suffix=f".tmp{suffix}", dir=target.parent)
    except OSError as exc:  # read-only folder, a name too long for the file system, a full disk ...
        raise InputError(f"{target}: cannot write here ({exc.strerror or type(exc).__name__}); choose another output path") from None
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs get the usual permissions
    try:
        yield tmp
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise InputError(f"{target}: cannot write here ({exc.strerror or type(exc).__name__}); choose another output path") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write bytes to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically (stable bytes for DVC)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def require_key(document: Any, dotted: str, source: str, fix: str = "rerun the stage that writes it") -> Any:
    """``document[a][b]...`` for ``dotted`` = "a.b..."; InputError naming ``source``, the key and ``fix`` when absent."""
    from certification.errors import InputError

    value = document
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise InputError(f"{source}: missing key '{dotted}'; {fix}")
        value = value[part]
    return value


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, raising :class:`~certification.errors.InputError` with the path on failure."""
    from certification.errors import InputError

    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found; run the stage that writes it first") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
