"""A real local Ray for the Ray backend's tests: started once (2 CPUs, no dashboard, Ray's logs kept off the
terminal) and shut down at the end; the tests' certification runs attach to it instead of starting their own."""
from __future__ import annotations

import logging
from typing import Iterator

#: CPUs of the test cluster: 1 and 2 workers fit, 3 do not.
CPUS = 2


def local_ray() -> Iterator[object]:
    """Start Ray on this machine (:data:`CPUS` logical CPUs), yield the module, shut it down."""
    import ray

    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    ray.init(address="local", num_cpus=CPUS, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()
