"""Who a client is: signed, expiring session tokens (HMAC-SHA256, stdlib only).

A token names an identity and an expiry and is signed with the operator's secret:

    xrs1.<base64url(JSON {"sub": identity, "exp": unix seconds, "iat": unix seconds})>.<base64url(HMAC-SHA256)>

`xrseg token --secret-file F --identity NAME --ttl 3600` mints one. The engine verifies the
signature and the expiry and takes the identity from the token; a session can be resumed only by
the identity that opened it (engine/server.py). Why HMAC and not JWT: one secret, one algorithm,
no algorithm-confusion surface, and no dependency.

Legacy plain tokens (`--token`) still work for tests and local demos: each distinct plain token
is its own identity, so everyone who holds one shared plain token is the same identity. Give
each user a signed token when that matters.

Comparisons are made on bytes (hmac.compare_digest raises TypeError on non-ASCII str).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "xrs1"
MIN_SECRET_BYTES = 16
MAX_TOKEN_CHARS = 2048
MAX_IDENTITY_CHARS = 128


class AuthError(Exception):
    """A token was refused; `reason` is a short label for metrics, the message tells the user what to do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Identity:
    """Who holds a verified token. name is what sessions are owned by."""

    name: str
    signed: bool
    expires: float | None = None


@dataclass(frozen=True)
class AuthConfig:
    """How tokens are checked.

    Attributes:
        secret: HMAC key for signed tokens (None: signed tokens are refused).
        plain_tokens: legacy shared tokens; each is one identity.
        open: accept any token when neither a secret nor plain tokens are set (local demos only);
            each distinct token string is then its own identity.
        leeway_s: clock skew tolerated on expiry.
    """

    secret: bytes | None = field(default=None, repr=False)
    plain_tokens: tuple[str, ...] = field(default=(), repr=False)
    leeway_s: float = 5.0

    @property
    def open(self) -> bool:
        return self.secret is None and not self.plain_tokens


def load_secret(path: Path) -> bytes:
    """The secret in a file (surrounding whitespace stripped); raises ValueError saying how to make one."""
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ValueError(f"cannot read the token secret {path}: {exc.strerror}") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"token secret {path} has {len(secret)} bytes; use at least {MIN_SECRET_BYTES}, e.g. "
            f'python -c "import secrets; print(secrets.token_hex(32))" > {path}'
        )
    return secret


def mint_token(secret: bytes, identity: str, ttl_s: float, now: float | None = None) -> str:
    """A signed token for `identity`, valid for ttl_s seconds from now."""
    if not 0 < len(identity) <= MAX_IDENTITY_CHARS or not identity.isprintable():
        raise ValueError(f"identity must be 1..{MAX_IDENTITY_CHARS} printable characters")
    if ttl_s <= 0:
        raise ValueError("ttl must be positive")
    issued = time.time() if now is None else now
    claims = {"sub": identity, "iat": int(issued), "exp": int(issued + ttl_s)}
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{PREFIX}.{body}".encode("ascii")
    return f"{PREFIX}.{body}.{_b64(_sign(secret, signing_input))}"


class Authenticator:
    """Verifies tokens against an AuthConfig. Stateless apart from its config (safe to share)."""

    def __init__(self, config: AuthConfig) -> None:
        self._config = config
        self._plain = tuple(t.encode("utf-8") for t in config.plain_tokens)

    def verify(self, token: str, now: float | None = None) -> Identity:
        """The identity a token proves; raises AuthError (reason: missing, malformed, bad_signature,
        expired, unknown_token)."""
        if not isinstance(token, str) or not token:
            raise AuthError("missing", "no session token; ask the engine operator for one (xrseg token)")
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError("malformed", f"token longer than {MAX_TOKEN_CHARS} characters")
        try:
            raw = token.encode("utf-8")
        except UnicodeEncodeError:
            raise AuthError("malformed", "token is not valid Unicode") from None
        if token.startswith(PREFIX + "."):
            return self._verify_signed(token, time.time() if now is None else now)
        if self._config.open:
            return Identity(f"anon-{hashlib.sha256(raw).hexdigest()[:16]}", signed=False)
        if any(hmac.compare_digest(raw, t) for t in self._plain):
            return Identity(f"token-{hashlib.sha256(raw).hexdigest()[:16]}", signed=False)
        raise AuthError("unknown_token", "wrong session token; ask the engine operator for one")

    def _verify_signed(self, token: str, now: float) -> Identity:
        if self._config.secret is None:
            raise AuthError("bad_signature", "this engine accepts no signed tokens (no --token-secret-file)")
        parts = token.split(".")
        if len(parts) != 3 or not token.isascii():
            raise AuthError("malformed", "signed token must be xrs1.<claims>.<signature>")
        expected = _sign(self._config.secret, f"{parts[0]}.{parts[1]}".encode("ascii"))
        try:
            signature = _unb64(parts[2])
        except ValueError:
            raise AuthError("malformed", "token signature is not base64url") from None
        if not hmac.compare_digest(signature, expected):
            raise AuthError(
                "bad_signature", "token signature does not verify; mint a new one with xrseg token"
            )
        try:
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, RecursionError):
            raise AuthError("malformed", "token claims are not JSON") from None
        sub, exp = (claims.get("sub"), claims.get("exp")) if isinstance(claims, dict) else (None, None)
        if not isinstance(sub, str) or not 0 < len(sub) <= MAX_IDENTITY_CHARS or not isinstance(exp, int):
            raise AuthError("malformed", "token claims need 'sub' (identity) and 'exp' (unix seconds)")
        if now > exp + self._config.leeway_s:
            raise AuthError("expired", "token expired; mint a new one with xrseg token")
        return Identity(sub, signed=True, expires=float(exp))


def _sign(secret: bytes, data: bytes) -> bytes:
    return hmac.new(secret, data, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None
