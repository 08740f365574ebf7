"""Stimuli as static files, by name, so that any server process, or the reverse proxy, can serve them.

The build renders each stimulus to a PNG under the study folder's `stimuli/`, named after the image,
model, method and class it shows. Those names are not for participants: a page's source would tell a
curious one their condition or a trial's right answer. So each stimulus is published once into
`public/` as a JPEG (quality 90: a tenth of the PNG's bytes, and what participants were always shown)
named by a hash of the PNG's bytes. The name says nothing about the trial, any process computes the
same name for the same picture, and a changed picture gets a new name, so browsers and the proxy may
keep a name for a year (`CACHE_CONTROL`). `camstudy serve` and `camstudy deploy` publish every
stimulus before the first participant; a process that meets one that is not published yet (a study
served another way) publishes it then.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

PUBLIC_DIR = "public"
URL_PREFIX = "/stimuli/"
CACHE_CONTROL = "public, max-age=31536000, immutable"
JPEG_QUALITY = 90
_NAME = re.compile(r"[0-9a-f]{32}\.jpg")


class PublishedStimuli:
    """The public names of one study's stimuli; safe to share between threads, cheap after the first
    look-up of each picture (one read of its PNG per process)."""

    def __init__(self, study_dir: Path):
        self.folder = Path(study_dir) / PUBLIC_DIR
        self._names: dict[Path, str] = {}
        self._lock = threading.Lock()

    def url(self, stimulus: Path) -> str:
        """The URL the page loads a stimulus PNG of the build from (published now if it is not yet)."""
        name = self._names.get(stimulus)
        if name is None:
            name = self._publish(stimulus)
            with self._lock:
                self._names[stimulus] = name
        return URL_PREFIX + name

    def publish(self, stimuli: Iterable[Path]) -> int:
        """Publish every one of `stimuli` (before serving); returns how many there are."""
        return sum(1 for stimulus in stimuli if self.url(stimulus))

    def _publish(self, stimulus: Path) -> str:
        data = stimulus.read_bytes()
        name = hashlib.sha256(data).hexdigest()[:32] + ".jpg"
        target = self.folder / name
        if not target.is_file():
            self.folder.mkdir(mode=0o755, exist_ok=True)
            with Image.open(io.BytesIO(data)) as picture:
                out = io.BytesIO()
                picture.convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY)
            # Written whole under a temporary name, then renamed: a process or the proxy serving the
            # name never sees half a file, and processes publishing at once write the same bytes.
            partial = target.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}")
            partial.write_bytes(out.getvalue())
            os.chmod(partial, 0o644)    # the proxy (another account) serves these
            os.replace(partial, target)
        return name


def public_file(study_dir: Path, name: str) -> Path | None:
    """The published file behind a URL name, or None for anything that is not one."""
    if not _NAME.fullmatch(name):
        return None
    path = Path(study_dir) / PUBLIC_DIR / name
    return path if path.is_file() else None
