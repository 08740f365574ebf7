"""Files that never change, served from memory: Streamlit's page assets and the published stimuli.

Every participant's browser loads Streamlit's page (about 70 files, 2.8 MB) once and each stimulus once.
Streamlit serves its files through the whole Starlette stack, reading each from disk in 64 KB chunks on a
thread, uncompressed: a sixth of a core-second per participant. Both kinds of file have names that change
with their contents, so each is read (and a script or style gzip-compressed) once per process and sent
whole, with a one-year cache lifetime. Behind the reverse proxy (`camstudy deploy`) nginx serves both and
this never runs; with one worker and no proxy it is what serves them.
"""
from __future__ import annotations

import gzip
import mimetypes
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from study.survey.stimulus_files import CACHE_CONTROL, URL_PREFIX, public_file

COMPRESSED = (".js", ".css", ".json", ".svg", ".html", ".txt", ".map")


class StaticFiles:
    """ASGI middleware: GET/HEAD of /static/<file under `streamlit_static`, Streamlit's static/static> and /stimuli/<published
    name> are answered from memory; everything else goes on to `app`."""

    def __init__(self, app, streamlit_static: Path, study_dir: Callable[[], Path]):
        self.app, self.root, self.study_dir = app, streamlit_static.resolve(), study_dir

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path.startswith("/static/"):
            found = self._asset(path[len("/static/"):])
        elif path.startswith(URL_PREFIX):
            found = _stimulus(self.study_dir(), path[len(URL_PREFIX):])
        else:
            found = None
        if found is None:
            return await self.app(scope, receive, send)
        kind, plain, packed = found
        accepts = b"gzip" in dict(scope["headers"]).get(b"accept-encoding", b"")
        body = packed if packed is not None and accepts else plain
        headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode()),
                   (b"cache-control", CACHE_CONTROL.encode()), (b"vary", b"Accept-Encoding")]
        if body is packed:
            headers.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    def _asset(self, relative: str):
        file = (self.root / relative).resolve()
        if not file.is_relative_to(self.root) or not file.is_file():
            return None        # Streamlit answers it (a 404, or its page for a path it routes)
        return _loaded(file)


@lru_cache(maxsize=4096)
def _loaded(file: Path) -> tuple[str, bytes, bytes | None]:
    """(content type, bytes, gzip-compressed bytes or None) of a file, read once per process."""
    data = file.read_bytes()
    kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return kind, data, gzip.compress(data, 6) if file.suffix in COMPRESSED else None


def _stimulus(study_dir: Path, name: str):
    file = public_file(study_dir, name)
    return None if file is None else _loaded(file)
