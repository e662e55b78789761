"""Turning `VIGIL_*` strings into typed values, with errors that name the variable.

Used by vigil/config.py only: one parser per kind of setting, plus the two checks that
span several settings (the TLS pair, the token value-or-file pairs).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Mapping


def text(env: Mapping[str, str], name: str, default: str) -> str:
    """The variable's value; unset or blank = `default`."""
    value = env.get(name, "")
    return value if value.strip() else default


def integer(raw: str, name: str, minimum: float | None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    return bounded(value, name, minimum)


def number(raw: str, name: str, minimum: float | None) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    return bounded(value, name, minimum)


def bounded(value: Any, name: str, minimum: float | None) -> Any:
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value}")
    return value


def boolean(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1/0, true/false, yes/no or on/off, got {raw!r}")


def choice(raw: str, name: str, choices: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def absolute(raw: str) -> str:
    """A file path made absolute ("" stays ""): `bentoml serve` runs from another folder."""
    raw = raw.strip()
    return str(Path(raw).expanduser().resolve()) if raw else ""


def pem(raw: str, name: str) -> str:
    """A PEM file's absolute path ("" when unset); a missing, unreadable or non-PEM file is an error."""
    path = absolute(raw)
    if not path:
        return ""
    try:
        content = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{name}={raw.strip()}: cannot read the file ({exc.strerror or exc})") from None
    if b"-----BEGIN " not in content:
        raise ValueError(f"{name}={raw.strip()}: not a PEM file (no '-----BEGIN' line)")
    return path


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise ValueError("the key is encrypted; Vigil needs an unencrypted PEM key")


def check_tls(cert: str, key: str) -> None:
    """Certificate and key both or neither, and belonging together (checked at start, in one line)."""
    if bool(cert) != bool(key):
        given, missing = ("VIGIL_TLS_KEY_FILE", "VIGIL_TLS_CERT_FILE") if key else ("VIGIL_TLS_CERT_FILE", "VIGIL_TLS_KEY_FILE")
        raise ValueError(f"TLS needs both VIGIL_TLS_CERT_FILE and VIGIL_TLS_KEY_FILE: {given} is set, {missing} is not")
    if cert:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key, password=_no_password)
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(f"VIGIL_TLS_CERT_FILE / VIGIL_TLS_KEY_FILE: cannot use {cert} with {key}: {exc}") from None


def check_tokens(values: Mapping[str, Any]) -> None:
    """Each bearer token is a value or a readable, non-empty file, not both (vigil/auth.py).

    Only the file's path is kept in the settings, so a token read from a mounted secret
    never travels into a child's environment (`to_env`).
    """
    from vigil.auth import resolve_token

    for field in ("api_token", "predict_token"):
        resolve_token(f"VIGIL_{field.upper()}", values[field].strip(), values[f"{field}_file"])
