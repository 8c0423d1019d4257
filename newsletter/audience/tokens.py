"""Signed tokens for unsubscribe links; the key is NEWSLETTER_SECRET_KEY, never config.toml."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from newsletter.config import SECRET_KEY_ENV, Settings
from newsletter.errors import BadToken, MissingKey, NewsletterError

KEY_FILE_NAME = "newsletter.secret"


@dataclass(frozen=True)
class SigningKey:
    key: bytes
    origin: str  # "environment" or the path of the generated key file

    def _signature(self, purpose: str, payload: bytes) -> bytes:
        return hmac.new(self.key, purpose.encode() + b"\0" + payload, hashlib.sha256).digest()[:16]

    def sign(self, purpose: str, *values: int) -> str:
        payload = ".".join(str(value) for value in values).encode()
        return f"{_b64(payload)}.{_b64(self._signature(purpose, payload))}"

    def tag(self, purpose: str, text: str) -> str:
        """A short keyed tag of `text` (16 lowercase letters and digits): what makes a value
        that strangers see (a Message-ID) impossible to forge for someone else."""
        digest = self._signature(purpose, text.encode())[:10]
        return base64.b32encode(digest).decode("ascii").lower()

    def verify(self, purpose: str, token: str, arity: int) -> tuple[int, ...]:
        try:
            encoded_payload, encoded_signature = token.split(".")
            payload = _unb64(encoded_payload)
            signature = _unb64(encoded_signature)
            values = tuple(int(part) for part in payload.decode("ascii").split("."))
        except (ValueError, UnicodeDecodeError):
            raise BadToken("this link is not valid") from None
        if len(values) != arity or not hmac.compare_digest(
            signature, self._signature(purpose, payload)
        ):
            raise BadToken("this link is not valid")
        return values


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or len(text) > 200:
        raise ValueError("bad length")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signing_key(settings: Settings, *, for_mail: bool = False) -> SigningKey:
    """NEWSLETTER_SECRET_KEY if set; else a random development key kept beside config.toml.

    Links in mail must outlive the machine that sent them, so mail goes out only with the
    environment variable, or with the development key when `[security] allow_development_key`
    says so (the shipped config does, for trying things out locally).
    """
    from_env = os.environ.get(SECRET_KEY_ENV, "")
    if from_env:
        if len(from_env) < 16:
            raise NewsletterError(
                f"{SECRET_KEY_ENV} is too short",
                hint="use at least 32 random characters, e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`",
            )
        return SigningKey(from_env.encode(), "environment")
    if for_mail and not settings.security.allow_development_key:
        raise MissingKey(
            f"{SECRET_KEY_ENV} is not set, so unsubscribe and confirmation links cannot be signed",
            hint=f"set it to a long random secret and keep it (old links must keep working): "
            f"export {SECRET_KEY_ENV}=\"$(python3 -c 'import secrets; "
            f"print(secrets.token_urlsafe(32))')\"; for local trials only, set "
            f"[security] allow_development_key = true in {settings.path.name}",
        )
    path = settings.folder / KEY_FILE_NAME
    return SigningKey(_read_or_create_key(path), str(path))


def _read_or_create_key(path: Path) -> bytes:
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        pass
    else:
        if len(key) < 16:
            raise NewsletterError(
                f"{path} holds no usable key",
                hint=f"delete it to have a new one made (links in mail already sent stop "
                f"working), or set {SECRET_KEY_ENV}",
            )
        return key
    key = secrets.token_urlsafe(48).encode()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(temporary, path)  # fails if another process created the key first: use theirs
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_bytes().strip()


def confirm_url(settings: Settings, key: SigningKey, list_id: int, subscriber_id: int) -> str:
    token = key.sign("confirm", list_id, subscriber_id, int(time.time() // 86400))
    return f"{settings.publication.base_url}/confirm/{token}"


def verify_confirm_token(settings: Settings, key: SigningKey, token: str) -> tuple[int, int]:
    """(list id, subscriber id) of a confirmation link younger than confirm_link_days."""
    list_id, subscriber_id, day = key.verify("confirm", token, 3)
    if int(time.time() // 86400) - day > settings.security.confirm_link_days:
        raise BadToken("this confirmation link has expired")
    return list_id, subscriber_id


def verify_unsubscribe_token(key: SigningKey, token: str) -> tuple[int, int]:
    """(list id, subscriber id) of an unsubscribe link; these never expire (CAN-SPAM, old mail)."""
    list_id, subscriber_id = key.verify("unsubscribe", token, 2)
    return list_id, subscriber_id


RESUBSCRIBE_MINUTES = 24 * 60


def resubscribe_token(key: SigningKey, list_id: int, subscriber_id: int) -> str:
    """Made when someone unsubscribes through a link: undoes just that, for a day."""
    return key.sign("resubscribe", list_id, subscriber_id, int(time.time() // 60))


def verify_resubscribe_token(key: SigningKey, token: str) -> tuple[int, int]:
    list_id, subscriber_id, minute = key.verify("resubscribe", token, 3)
    if int(time.time() // 60) - minute > RESUBSCRIBE_MINUTES:
        raise BadToken("this link has expired")
    return list_id, subscriber_id


# The unsubscribe link of previews and test copies: it unsubscribes nobody, and says so.
PREVIEW_UNSUBSCRIBE_PATH = "/unsubscribe/preview"


def unsubscribe_url(settings: Settings, key: SigningKey, list_id: int, subscriber_id: int) -> str:
    token = key.sign("unsubscribe", list_id, subscriber_id)
    return f"{settings.publication.base_url}/unsubscribe/{token}"


def preferences_url(settings: Settings, key: SigningKey, subscriber_id: int) -> str:
    """A reader's preference centre; like unsubscribe links, it never expires."""
    return f"{settings.publication.base_url}/preferences/{key.sign('preferences', subscriber_id)}"


def verify_preferences_token(key: SigningKey, token: str) -> int:
    (subscriber_id,) = key.verify("preferences", token, 1)
    return subscriber_id


PREFERENCES_FORM_MINUTES = 24 * 60


def preferences_form_token(key: SigningKey, subscriber_id: int) -> str:
    """The CSRF token of one reader's preferences form: good for a day, for that reader only."""
    return key.sign("preferences-form", subscriber_id, int(time.time() // 60))


def verify_preferences_form_token(key: SigningKey, token: str, subscriber_id: int) -> None:
    signed_for, minute = key.verify("preferences-form", token, 2)
    if signed_for != subscriber_id or int(time.time() // 60) - minute > PREFERENCES_FORM_MINUTES:
        raise BadToken("this form is out of date")
