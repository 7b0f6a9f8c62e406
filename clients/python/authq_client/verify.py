"""A gateway's local check of an authq access token (PROTOCOL.md, "Access tokens"): the EdDSA
signature against the published keys (the ``jwks`` reply or the worker's JWKS file), then
``alg``, ``iss``, ``aud`` and ``exp`` against the given time. No call to authq. Needs the
``cryptography`` package (the ``verify`` extra)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Dict, Iterable, Optional


class TokenRefused(Exception):
    """The token was refused; ``reason`` is ``malformed``, ``algorithm``, ``unknown_key``,
    ``invalid`` or ``expired``."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"access token refused: {reason}")
        self.reason = reason


def _b64(segment: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (ValueError, TypeError):
        raise TokenRefused("malformed") from None


def _json(segment: str) -> Dict[str, Any]:
    try:
        value = json.loads(_b64(segment))
    except ValueError:
        raise TokenRefused("malformed") from None
    if not isinstance(value, dict):
        raise TokenRefused("malformed")
    return value


def verify_access_token(
    token: str,
    keys: Iterable[Dict[str, Any]],
    issuer: str,
    audience: str,
    now: Optional[int] = None,
) -> Dict[str, Any]:
    """The claims of ``token`` if it is valid at ``now`` (Unix seconds; default: the system
    clock) for ``issuer`` and ``audience`` under one of ``keys`` (JWKS keys, e.g.
    ``client.jwks().keys``); raises :class:`TokenRefused` otherwise. Only EdDSA (Ed25519) is
    accepted: never ``none``, never an HMAC algorithm. On ``unknown_key``, read the key set
    again once (a new key may have started signing)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    parts = token.split(".")
    if len(parts) != 3:
        raise TokenRefused("malformed")
    header = _json(parts[0])
    if header.get("alg") != "EdDSA":
        raise TokenRefused("algorithm")
    jwk = next(
        (
            k
            for k in keys
            if k.get("kid") == header.get("kid")
            and k.get("kty") == "OKP"
            and k.get("crv") == "Ed25519"
            and k.get("alg") == "EdDSA"
        ),
        None,
    )
    if jwk is None:
        raise TokenRefused("unknown_key")
    try:
        key = Ed25519PublicKey.from_public_bytes(_b64(jwk["x"]))
        key.verify(_b64(parts[2]), f"{parts[0]}.{parts[1]}".encode())
    except (InvalidSignature, ValueError):
        raise TokenRefused("invalid") from None
    claims = _json(parts[1])
    if claims.get("iss") != issuer or claims.get("aud") != audience:
        raise TokenRefused("invalid")
    if not isinstance(claims.get("exp"), int) or not isinstance(claims.get("sub"), str):
        raise TokenRefused("invalid")
    if claims["exp"] <= (int(time.time()) if now is None else now):
        raise TokenRefused("expired")
    return claims
