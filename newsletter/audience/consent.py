"""The consent history: what a reader chose, when, and from where.

A signup or a preference change keeps the client's network, not its address: an IPv4 address
truncated to its /24, an IPv6 address to its /48. A hash would not hide an IPv4 address (all
4.3 billion can be hashed in minutes), while the network is still enough to show where a wave
of signups came from, and says nothing about which device in it made one.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime

from sqlmodel import Session

from newsletter.models import ConsentEvent, utcnow

MAX_DETAIL = 500


def client_network(address: str | None) -> str:
    """The truncated network of a client address ("" when there is none or it is not one)."""
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def record(
    session: Session,
    subscriber_id: int,
    action: str,
    *,
    list_id: int | None = None,
    detail: str = "",
    origin: str = "",
    page: str = "",
    client: str = "",
    at: datetime | None = None,
) -> None:
    """Add one event to a reader's consent history (in the caller's unit of work)."""
    session.add(
        ConsentEvent(
            subscriber_id=subscriber_id,
            list_id=list_id,
            action=action,
            detail=detail[:MAX_DETAIL],
            origin=origin,
            page=page[:MAX_DETAIL],
            client=client,
            at=at or utcnow(),
        )
    )
