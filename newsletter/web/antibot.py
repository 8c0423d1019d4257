"""The gate before the signup service: what tells a person at a browser from a script.

Layered, all self-hosted, none a puzzle for the person:
- a honeypot field people never see (hidden from sight and from screen readers);
- a signed form token carrying when the form was made: a submission sooner than
  `[signup] min_seconds` or later than `max_age_hours` is refused, and each token works once
  (a replayed submission, with whatever address, mails nobody);
- rate limits per client network and per mail domain, in this process's memory;
- optionally a proof of work (the ALTCHA scheme, verified by the `altcha` library), solved by
  the page's own script and bound to that form's token, so a solution cannot be reused.

A submission caught as a script is answered like a success (a bot learns nothing); one a
person could have made (too fast, too old, too many) is answered with the reason.
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from newsletter.errors import BadToken

if TYPE_CHECKING:
    from newsletter.app import Newsletter

FORM_PURPOSE = "signup-form"
HONEYPOT = "website"  # a field name autofill and bots like to fill
TOKEN_FIELD = "form_token"  # noqa: S105 (a field name, not a secret)
PROOF_FIELD = "altcha"


class Refusal(StrEnum):
    SCRIPT = "script"  # honeypot, missing or forged fields, a replay, no proof of work
    TOO_FAST = "too fast"
    EXPIRED = "expired"
    TOO_MANY = "too many"


@dataclass(frozen=True)
class FormTicket:
    """What a signup form carries: its token and, with proof of work on, its challenge."""

    token: str
    challenge: dict[str, Any] | None


class SlidingWindow:
    """At most `limit` events per key in the last `seconds`; keys kept in memory, the least
    recently used dropped beyond `max_keys` so a flood of keys cannot grow it without bound."""

    def __init__(self, limit: int, seconds: float, max_keys: int = 50_000) -> None:
        self.limit, self.seconds, self.max_keys = limit, seconds, max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str, now: float) -> bool:
        """Count one event for `key` if it is within the limit; False (not counted) if not."""
        with self._lock:
            events = self._events.pop(key, None) or deque()
            while events and events[0] <= now - self.seconds:
                events.popleft()
            allowed = len(events) < self.limit
            if allowed:
                events.append(now)
            self._events[key] = events
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)
            return allowed


def client_key(address: str | None) -> str:
    """The rate-limit key of a client: an IPv4 address, or an IPv6 /64 (one household's
    addresses rotate within it)."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "unknown"
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class SignupGate:
    def __init__(self, app: Newsletter, clock: Callable[[], float] | None = None) -> None:
        self.app = app
        self.settings = app.settings.signup
        self.clock = clock or (lambda: app.now().timestamp())
        self.per_client = SlidingWindow(self.settings.per_client_per_hour, 3600)
        self.per_domain = SlidingWindow(self.settings.per_domain_per_hour, 3600)

    def _hmac_key(self) -> bytes:
        return self.app.signing_key().key + b"\0altcha"

    def ticket(self) -> FormTicket:
        nonce = secrets.randbits(62)
        issued = int(self.clock())
        token = self.app.signing_key().sign(FORM_PURPOSE, issued, nonce)
        challenge = None
        if self.settings.proof_of_work:
            from altcha.v1 import ChallengeOptions, create_challenge

            expires = datetime.fromtimestamp(issued, UTC) + timedelta(
                hours=self.settings.max_age_hours
            )
            made = create_challenge(
                ChallengeOptions(
                    hmac_key=self._hmac_key(),
                    max_number=self.settings.proof_of_work_max,
                    expires=expires,
                    params={"form": str(nonce)},
                )
            )
            challenge = made.to_dict()
        return FormTicket(token, challenge)

    def check(self, fields: Mapping[str, str], client: str | None, domain: str) -> Refusal | None:
        """Whether a submitted signup may go on to the service; None when it may."""
        if fields.get(HONEYPOT):
            return Refusal.SCRIPT
        try:
            issued, nonce = self.app.signing_key().verify(
                FORM_PURPOSE, fields.get(TOKEN_FIELD, ""), 2
            )
        except BadToken:
            return Refusal.SCRIPT
        age = self.clock() - issued
        if age < self.settings.min_seconds:
            return Refusal.TOO_FAST
        if age > self.settings.max_age_hours * 3600:
            return Refusal.EXPIRED
        if self.settings.proof_of_work and not self._proof_holds(fields.get(PROOF_FIELD), nonce):
            return Refusal.SCRIPT
        if not self.app.signup.spend_form_token(str(nonce)):
            return Refusal.SCRIPT
        now = time.monotonic()
        if not self.per_client.allow(client_key(client), now):
            return Refusal.TOO_MANY
        if not self.per_domain.allow(domain.casefold(), now):
            return Refusal.TOO_MANY
        return None

    def _proof_holds(self, payload: str | None, nonce: int) -> bool:
        from altcha.v1 import Payload, extract_params, verify_solution

        if not payload or len(payload) > 2000:
            return False
        try:
            solved = Payload.from_base64(payload)
        except (ValueError, TypeError, KeyError):
            return False
        ok, _error = verify_solution(solved, self._hmac_key(), True)
        if not ok:
            return False
        return extract_params(solved.to_dict()).get("form") == [str(nonce)]
