"""The CA bundle swap: a one-certificate PEM for a plain-http loopback API.

Prefect builds an SSL context for every client it creates, loading the whole CA bundle each
time, twice per task on a worker (docs/runtime-notes.md, "One certificate for a loopback API").
Over plain http nothing is ever verified, so any one valid certificate does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from harness.runtime.cache import cache_dir

_BEGIN = "-----BEGIN CERTIFICATE-----"
_END = "-----END CERTIFICATE-----"


def is_loopback_http(url: str) -> bool:
    """True only for plain http to 127.x.x.x or localhost: the one case where the swap is safe."""
    return re.match(r"^http://(127\.\d+\.\d+\.\d+|localhost)(:\d+)?/", url) is not None


def one_certificate_file() -> Path:
    """A PEM holding the first CA certificate of the bundle the machine already trusts."""
    import certifi

    target = cache_dir() / "one-cert.pem"
    if not target.exists():
        bundle = Path(certifi.where()).read_text()
        first = bundle[: bundle.index(_END) + len(_END)]
        first = first[first.index(_BEGIN) :]
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(first + "\n")
        tmp.replace(target)
    return target
