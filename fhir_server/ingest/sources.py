"""Where ``fhir-server ingest`` reads feeds and its RPPS table: files, or URLs fetched with
httpx, each bounded in size (and URLs in time) before a mapper sees a byte."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
import orjson

RPPS_DIGITS = 11


class SourceError(Exception):
    """A feed or table that could not be read (the message says why, without its content)."""


def is_url(name: str) -> bool:
    return name.startswith(("http://", "https://"))


def read_source(name: str, max_bytes: int, timeout_s: float = 30.0) -> bytes:
    """The bytes of a file or URL; ``SourceError`` when missing, failing or over ``max_bytes``
    (a URL's body is refused as soon as it passes the limit, never read whole)."""
    if is_url(name):
        return _fetch(name, max_bytes, timeout_s)
    path = Path(name)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise SourceError(f"{name}: {size:,} bytes, more than the {max_bytes:,} allowed")
        return path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{name}: {exc.strerror or exc}") from exc


def _fetch(url: str, max_bytes: int, timeout_s: float) -> bytes:
    try:
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=True) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise SourceError(f"{url}: HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise SourceError(f"{url}: {int(declared):,} bytes, more than {max_bytes:,}")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise SourceError(f"{url}: more than the {max_bytes:,} bytes allowed")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise SourceError(f"{url}: {type(exc).__name__}: {exc}") from exc


def read_rpps_table(path: Path) -> dict[str, str]:
    """Vendor practitioner key -> RPPS, from JSON (``{"key": "RPPS"}``) or CSV (two columns,
    ``key,rpps``; a header line is skipped). A value that is not 11 digits is refused."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: {exc.strerror or exc}") from exc
    table: dict[str, str] = {}
    if path.suffix.lower() == ".json":
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise SourceError(f"{path}: not JSON ({exc})") from exc
        if not isinstance(doc, dict):
            raise SourceError(f"{path}: expected an object of key -> RPPS")
        rows = [(str(k), str(v)) for k, v in doc.items()]
    else:
        text = raw.decode("utf-8-sig", errors="replace")
        first = text.split("\n", 1)[0]
        delimiter = next((d for d in ";\t" if d in first), ",")
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        rows = [(r[0].strip(), r[1].strip()) for r in reader if len(r) >= 2]
        if rows and not rows[0][1].isdigit():
            rows = rows[1:]  # the header
    for line, (key, rpps) in enumerate(rows, 1):
        if len(rpps) != RPPS_DIGITS or not rpps.isdigit():
            raise SourceError(f"{path}: entry {line}: RPPS {rpps!r} is not {RPPS_DIGITS} digits")
        table[key] = rpps
    return table
