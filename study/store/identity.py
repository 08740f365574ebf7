"""What a participant id is: the rules every part of camstudy that reads or makes one agrees on.

A link identifies one person and only that person. Only `PROLIFIC_PID` or `pid` name a
participant: Prolific's `STUDY_ID` is the same for everyone in a study and `SESSION_ID` names a
submission, not a person, so they are stored beside the id and never stand in for it. Labs that
hand out their own links can sign them (`camstudy links`): an HMAC-SHA256 of the id under a
per-study secret kept in the study folder, so an id cannot be made up or guessed
(`signed_links = true`). The browser that consents keeps a resume credential (a cookie whose
sha256 the database holds): knowing someone's id is then not enough to continue as them. The
participant is also shown a short resume code at consent, with which they can continue in another
browser (or after clearing cookies) without the researchers' help. A link whose participant withdrew
or was erased is remembered only as a keyed hash (`withdrawn_marker`), so it cannot start again.

The simulator makes ids with `SIM_PREFIX`, and the report, the export's codebook and the tests
recognise simulated participants by it.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlencode

SIM_PREFIX = "SIM-"  # external ids of simulated participants start with this; no real panel id does
ID_PARAMS = ("PROLIFIC_PID", "pid")            # what names a participant, first present wins
CONTEXT_PARAMS = ("STUDY_ID", "SESSION_ID")    # stored beside the id, never used as one
SIGNATURE_PARAM = "sig"
PILOT_PARAM = "pilot"                          # a pilot link: the id's pilot signature
PILOT_ENV = "CAMSTUDY_PILOT"                   # set by `camstudy serve --pilot`: everyone is a pilot
SECRET_FILE = ".link-secret"
_VALID_ID = re.compile(r"[\w.@:-]{1,128}")


class BadLink(ValueError):
    """The link carries no usable participant id, or a missing or wrong signature."""


def external_id_from(params: Mapping[str, str]) -> str | None:
    """The participant id the link carries (`PROLIFIC_PID`, else `pid`), or None."""
    for name in ID_PARAMS:
        value = (params.get(name) or "").strip()
        if value:
            return value
    return None


def context_from(params: Mapping[str, str]) -> dict[str, str]:
    """The link's study and session parameters, kept beside the participant id."""
    return {name: str(params[name])[:200] for name in CONTEXT_PARAMS if params.get(name)}


def check_external_id(external_id: str) -> str:
    """The id if it is 1-128 letters, digits or `. @ : - _`; BadLink otherwise."""
    if not isinstance(external_id, str) or not _VALID_ID.fullmatch(external_id):
        raise BadLink("a participant id must be 1-128 letters, digits or . @ : - _")
    return external_id


def link_secret(study_dir: str | Path) -> bytes:
    """The study's signing secret, made on first use and readable by its owner only."""
    path = Path(study_dir) / SECRET_FILE
    if not path.is_file():   # written whole under another name, then linked: no reader sees it half-written
        temporary = path.with_name(f"{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_hex(32))
        try:
            os.link(temporary, path)      # fails if another process made the secret meanwhile: keep theirs
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    secret = bytes.fromhex(path.read_text().strip())
    if not secret:
        raise ValueError(f"{path} holds no signing secret; delete it to make a new one (links made before stop working)")
    return secret


def sign(secret: bytes, external_id: str) -> str:
    """HMAC-SHA256 of the id (hex, 32 characters: 128 bits are plenty against guessing)."""
    return hmac.new(secret, external_id.encode(), hashlib.sha256).hexdigest()[:32]


def verify(secret: bytes, external_id: str, signature: str | None) -> bool:
    return bool(signature) and hmac.compare_digest(sign(secret, external_id).encode(), str(signature).encode())


def pilot_signature(secret: bytes, external_id: str) -> str:
    """What marks a pilot link: a signature of the id under another name, so no participant can
    mark themselves a pilot (and no pilot link passes for a real one)."""
    return sign(secret, f"pilot|{external_id}")


def is_pilot_link(secret: bytes, external_id: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(pilot_signature(secret, external_id).encode(), str(token).encode())


def signed_links(study_dir: str | Path, n: int, base_url: str, *, pilot: bool = False) -> list[str]:
    """`n` fresh participant links with random ids and their signatures (and pilot marks)."""
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    secret = link_secret(study_dir)
    ids = [f"{'PILOT' if pilot else 'P'}-{secrets.token_hex(5)}" for _ in range(n)]
    joiner = "&" if "?" in base_url else "?"
    links = []
    for i in ids:
        params = {"pid": i, SIGNATURE_PARAM: sign(secret, i)}
        if pilot:
            params[PILOT_PARAM] = pilot_signature(secret, i)
        links.append(f"{base_url}{joiner}{urlencode(params)}")
    return links


RESUME_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"   # no 0/O, 1/I/L: read aloud or copied by hand
RESUME_LENGTH = 8                                       # 31**8, about 2**40, against 10 tries per id


def new_resume_code() -> tuple[str, str]:
    """(a short code to show the participant, e.g. "K7QM-4XPA", its sha256 for the database)."""
    code = "".join(secrets.choice(RESUME_ALPHABET) for _ in range(RESUME_LENGTH))
    return f"{code[:4]}-{code[4:]}", credential_hash(code)


def resume_code_hash(typed: str) -> str:
    """The hash of a resume code as typed: case, spaces and dashes do not matter."""
    return credential_hash(re.sub(r"[\s-]", "", typed or "").upper())


def withdrawn_marker(secret: bytes, external_id: str) -> str:
    """What is kept of a link whose participant withdrew or was erased: an HMAC of the id under the
    study's secret, so that the link cannot start again while the id itself is gone."""
    return hmac.new(secret, f"withdrawn|{external_id}".encode(), hashlib.sha256).hexdigest()


def new_credential() -> tuple[str, str]:
    """(credential for the browser to keep, its sha256 for the database)."""
    token = secrets.token_urlsafe(24)
    return token, credential_hash(token)


def credential_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def holds_credential(token: str | None, digest: str | None) -> bool:
    """Whether a browser's credential is the one whose sha256 the database keeps (False if either is missing)."""
    return token is not None and digest is not None and hmac.compare_digest(
        credential_hash(token).encode(), digest.encode())
