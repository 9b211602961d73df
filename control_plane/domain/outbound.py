"""Which URLs an organization may make the server fetch, and which addresses they may reach.

An org configures URLs that the server later fetches itself (OIDC discovery and
the ``jwks_uri`` it names, for trust policies and identity providers; later SIEM
endpoints and client metadata documents). Without rules, that is a server-side
request forgery primitive (OWASP SSRF Prevention Cheat Sheet; CWE-918): an org
admin could have the server probe ``127.0.0.1:5432``, a private network or a
cloud metadata service (``169.254.169.254``). So:

* https only; plain http only to loopback, and only in *local mode* (dev mode on
  the embedded SQLite, sandbox mode, or ``AGENTAUTH_OUTBOUND_LOOPBACK=1`` for test
  harnesses that run the loopback emulators);
* every address a host name resolves to, and every literal address, must be
  public: never loopback (except in local mode), private (RFC 1918, fc00::/7),
  link-local, multicast, reserved, unspecified, CGNAT (100.64.0.0/10), ``0/8``,
  site-local, nor an IPv6 address that embeds such an IPv4 address
  (IPv4-mapped, NAT64 ``64:ff9b::/96``, 6to4, Teredo);
* the platform may allow-list networks and host names
  (``AGENTAUTH_OUTBOUND_ALLOW``) for an identity provider on a private network.

Pure rules: :mod:`control_plane.net.guarded_http` resolves, pins and fetches.
:meth:`OutboundPolicy.check_url` is the create-time check, which cannot resolve
DNS (answers change); the check of resolved addresses at fetch time is the real
guard.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from control_plane.domain.errors import field_error

__all__ = ["OutboundPolicy", "address_refused", "literal_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL = 2048
#: Ranges refused beyond what ``ipaddress``'s properties name.
_EXTRA_REFUSED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("0.0.0.0/8"),  # "this network"
    ipaddress.ip_network("100.64.0.0/10"),  # CGNAT, RFC 6598
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.ip_network("198.18.0.0/15"),  # benchmarking
    ipaddress.ip_network("64:ff9b:1::/48"),  # local-use NAT64, RFC 8215
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
#: RFC 6761 §6.3: ``localhost`` and every name under it are the loopback host.
_LOOPBACK_NAMES = ("localhost", "localhost.")


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, NAT64, 6to4, Teredo), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address
    return None


def _forms(ip: IPAddress) -> tuple[IPAddress, ...]:
    v4 = _embedded_v4(ip)
    return (ip,) if v4 is None else (ip, v4)


def _special(ip: IPAddress) -> bool:
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
        or not ip.is_global
        or any(ip.version == n.version and ip in n for n in _EXTRA_REFUSED)
    )


def address_refused(ip: IPAddress) -> bool:
    """True for any address that is not plainly public, or that embeds one that is not."""
    return any(_special(form) for form in _forms(ip))


def _is_loopback(ip: IPAddress) -> bool:
    return any(form.is_loopback for form in _forms(ip))


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host denotes without DNS: an IP literal, or a legacy IPv4
    form (``127.1``, ``2130706433``, ``0x7f.0.0.1``) that resolvers accept."""
    host = host.split("%", 1)[0].rstrip(".")  # an IPv6 zone id; a root-label dot
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _names_loopback(host: str) -> bool:
    return host in _LOOPBACK_NAMES or host.endswith((".localhost", ".localhost."))


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """The platform's rules for fetching org-configured URLs.

    ``local``: loopback addresses are reachable, over plain http too (the
    emulators of dev and sandbox mode). ``allow_networks``/``allow_hosts``: the
    platform's allow-list (``AGENTAUTH_OUTBOUND_ALLOW``); an address in one of
    the networks, or any address of a listed host name, passes the range check.
    The https rule holds for allow-listed destinations too.
    """

    local: bool = False
    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, allow: str, *, local: bool = False) -> OutboundPolicy:
        """``allow``: comma-separated CIDRs (or single addresses) and host names."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for raw in allow.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = entry.rstrip(".")
            if not all(_LABEL.fullmatch(label) for label in name.split(".")):
                raise ValueError(f"not a CIDR or a host name (ASCII): {raw.strip()!r}")
            hosts.add(name)
        return cls(local, tuple(networks), frozenset(hosts))

    # ---------------------------------------------------------------- addresses

    def address_allowed(self, host: str, ip: IPAddress) -> bool:
        """May a connection for ``host`` go to ``ip``? (``host`` as in the URL.)"""
        if host.lower().rstrip(".") in self.allow_hosts:
            return True
        for form in _forms(ip):
            if any(form.version == n.version and form in n for n in self.allow_networks):
                return True
        if self.local and _is_loopback(ip):
            return True
        return not address_refused(ip)

    # ---------------------------------------------------------------- URLs

    def url_problem(self, url: str) -> str | None:
        """Why ``url`` may not be fetched, judged without DNS; None when it may be tried."""
        if len(url) > MAX_URL:
            return "too long"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return "not a URL"
        host = (parts.hostname or "").lower()
        if parts.username is not None or parts.password is not None or not host:
            return "not an absolute URL without credentials"
        if port == 0:
            return "port 0"
        literal = literal_address(host)
        loopback = _names_loopback(host) or (literal is not None and _is_loopback(literal))
        if parts.scheme == "http":
            if not (self.local and loopback):
                return "plain http"
        elif parts.scheme != "https":
            return "not https"
        if host.rstrip(".") in self.allow_hosts:
            return None
        if _names_loopback(host) and not self.local:
            return "loopback host name"
        if literal is not None and not self.address_allowed(host, literal):
            return "refused address"
        return None

    def check_url(self, url: str, field_name: str) -> str:
        """Create-time check of an org-supplied fetch URL: a field error, or ``url``."""
        if len(url) > MAX_URL:
            raise field_error(field_name, "is too long", "FIELD_TOO_LONG")
        problem = self.url_problem(url)
        if problem is None:
            return url
        if problem in ("plain http", "not https"):
            raise field_error(
                field_name,
                "must use https" + (" (http only for loopback hosts)" if self.local else ""),
            )
        if problem in ("loopback host name", "refused address"):
            raise field_error(
                field_name,
                "must not point at a loopback, private, link-local or other internal address",
            )
        raise field_error(field_name, "must be an absolute URL without credentials")
