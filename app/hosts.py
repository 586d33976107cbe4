"""Which ``Host`` names the server answers to: the defence against DNS rebinding.

A page on ``http://evil.example:8000`` whose name the attacker re-points at 127.0.0.1 talks to the
local dashboard as its own origin: the browser sends ``Host: evil.example:8000`` and a matching
``Origin``, so comparing the two proves nothing. What the attacker cannot choose is a name we
accept, hence an allow-list (as MLflow's ``--allowed-hosts`` and Jupyter's ``local_hostnames``):

- always the loopback names ``localhost``, ``127.0.0.1`` (any loopback IP literal) and ``[::1]``;
- the address the server is bound to; bound to a wildcard (``0.0.0.0``, ``::``) every address of
  the machine is a bound address, so any IP literal and the machine's host name are accepted
  (rebinding needs a DNS name: a page can only send ``Host: 10.0.0.7`` if it was itself loaded
  from that IP, i.e. from us);
- whatever ``PANDAMODE_ALLOWED_HOSTS`` adds, comma-separated: ``name``, ``name:port``,
  ``*.example.com``, or ``*`` to accept every name deliberately (behind a proxy that checks it).

Ports do not matter unless an entry names one. Starlette's ``TrustedHostMiddleware`` was not used:
it answers 400 in plain text, knows no "any IP literal", and the Origin rule needs the same
matcher.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

WILDCARD_BINDS = frozenset({"0.0.0.0", "::", "[::]", ""})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def split_host(value: str) -> tuple[str, int | None] | None:
    """``"Name:8000"`` → ``("name", 8000)``; ``"[::1]:80"`` → ``("::1", 80)``; None if malformed.

    The name is lower-cased, IPv6 brackets and a trailing dot are dropped.
    """
    value = value.strip().lower()
    port: str | None = None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
    elif value.count(":") == 1:
        name, port = value.split(":")
    elif ":" in value:
        name = value  # a bare IPv6 literal, as in an unbracketed setting entry
    else:
        name = value
    name = name.rstrip(".")
    if not name or any(c.isspace() or c in "/\\@?#" for c in name):
        return None
    if port is not None:
        if not port.isascii() or not port.isdigit() or int(port) > 65535:
            return None
        return name, int(port)
    return name, None


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


@dataclass(frozen=True)
class _Entry:
    name: str  # lower-case, no brackets; "*.example.com" for a domain wildcard
    port: int | None

    def matches(self, name: str, port: int | None) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.name.startswith("*."):
            return name.endswith(self.name[1:])
        return name == self.name


class AllowedHosts:
    """The names this server may be reached by; see the module docstring for the defaults."""

    def __init__(self, bind: str, extra: Iterable[str] = ()) -> None:
        extra = [e.strip() for e in extra if e.strip()]
        self.allow_any = "*" in extra
        self.any_ip = bind.strip() in WILDCARD_BINDS
        defaults = [*LOOPBACK_NAMES]
        if not self.any_ip:
            defaults.append(bind)
        else:
            defaults.append(socket.gethostname())
        self.entries = [_parse_entry(e) for e in defaults]
        # Named by the user: also trusted as an Origin different from Host (a reverse proxy).
        self.configured = [_parse_entry(e) for e in extra if e != "*"]
        self.entries += self.configured

    @classmethod
    def from_setting(cls, bind: str, setting: str) -> AllowedHosts:
        """From the bind address and the comma-separated ``PANDAMODE_ALLOWED_HOSTS`` value."""
        return cls(bind, setting.split(","))

    def allows(self, host_header: str) -> bool:
        """Whether a request carrying this ``Host`` header is meant for us."""
        if self.allow_any:
            return True
        parsed = split_host(host_header)
        if parsed is None:
            return False
        name, port = parsed
        ip = _ip(name)
        if ip is not None and (ip.is_loopback or self.any_ip):
            return True
        return any(e.matches(name, port) for e in self.entries)

    def configured_origin(self, netloc: str) -> bool:
        """Whether an Origin's host was named in the setting (never by ``*``): a page served
        under that name (e.g. by a reverse proxy) may post even though Host differs."""
        parsed = split_host(netloc)
        return parsed is not None and any(e.matches(*parsed) for e in self.configured)


def _parse_entry(entry: str) -> _Entry:
    parsed = split_host(entry)
    if parsed is None:
        raise ValueError(f"PANDAMODE_ALLOWED_HOSTS: not a host name: {entry!r}")
    name, port = parsed
    if "*" in name and not (name.startswith("*.") and "*" not in name[1:]):
        raise ValueError(
            f"PANDAMODE_ALLOWED_HOSTS: a wildcard must be '*' or '*.domain': {entry!r}"
        )
    return _Entry(name, port)
