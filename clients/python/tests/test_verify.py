"""verify_access_token refuses what authq::verify refuses (tests/it/tokens.rs), offline."""

import base64
import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from authq_client import TokenRefused, verify_access_token

NOW = 1_800_000_000
PRIVATE = Ed25519PrivateKey.generate()
RAW = PRIVATE.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


X = b64(RAW)
KEYS = [{"kty": "OKP", "crv": "Ed25519", "x": X, "kid": "k1", "alg": "EdDSA", "use": "sig"}]
CLAIMS = {
    "sub": "u1", "sid": "s1", "client_type": "user", "iat": NOW, "exp": NOW + 300,
    "iss": "authq", "aud": "authq", "jti": "j1", "session_epoch": 0,
}


def j(value) -> str:
    return b64(json.dumps(value).encode())


def token(header, payload) -> str:
    signing_input = f"{j(header)}.{j(payload)}"
    return f"{signing_input}.{b64(PRIVATE.sign(signing_input.encode()))}"


def refused(t, reason, **kw):
    args = {"issuer": "authq", "audience": "authq", "now": NOW, **kw}
    with pytest.raises(TokenRefused) as e:
        verify_access_token(t, KEYS, **args)
    assert e.value.reason == reason


def test_a_valid_token_verifies():
    t = token({"alg": "EdDSA", "kid": "k1"}, CLAIMS)
    assert verify_access_token(t, KEYS, "authq", "authq", now=NOW) == CLAIMS


def test_forged_altered_misaddressed_expired_and_unknown_key_tokens_are_refused():
    good = token({"alg": "EdDSA", "kid": "k1"}, CLAIMS)
    h, p, s = good.split(".")
    refused(f"{j({'alg': 'none', 'kid': 'k1'})}.{p}.", "algorithm")
    hs_input = f"{j({'alg': 'HS256', 'kid': 'k1'})}.{p}"
    mac = hmac.new(RAW, hs_input.encode(), hashlib.sha256).digest()
    refused(f"{hs_input}.{b64(mac)}", "algorithm")
    refused(f"{h}.{j({**CLAIMS, 'sub': 'someone-else'})}.{s}", "invalid")
    refused(token({"alg": "EdDSA", "kid": "k1"}, {**CLAIMS, "aud": "other"}), "invalid")
    refused(token({"alg": "EdDSA", "kid": "k1"}, {**CLAIMS, "iss": "other"}), "invalid")
    refused(good, "expired", now=NOW + 300)
    refused(token({"alg": "EdDSA", "kid": "k2"}, CLAIMS), "unknown_key")
    refused("not-a-jwt", "malformed")
