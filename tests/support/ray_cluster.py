"""A real local Ray for the Ray backend's tests, started once by the library's own
:func:`certification.ray_backend.start_local_ray` (2 CPUs) and shut down at the end; the tests' certification runs
attach to it instead of starting their own. What the start printed on stderr (file descriptor 2, so Ray's C++ side
too) is kept for a test to check."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Iterator

#: CPUs of the test cluster: 1 and 2 workers fit, 3 do not.
CPUS = 2


@dataclass(frozen=True)
class LocalRay:
    cpus: int
    start_stderr: str  # everything written to fd 2 while Ray started


def local_ray() -> Iterator[LocalRay]:
    """Start Ray on this machine (:data:`CPUS` logical CPUs), yield what its start printed, shut it down."""
    import ray

    from certification.ray_backend import start_local_ray

    with tempfile.TemporaryFile(mode="w+") as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            start_local_ray(CPUS)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read()
    try:
        yield LocalRay(CPUS, text)
    finally:
        ray.shutdown()
