"""The typed org scope: the one organization a unit of work may read or write.

HashiCorp Vault hands each secrets backend a ``BarrierView``: a view of the
storage barrier that can only see the backend's own prefix, so a backend that
forgets a prefix cannot reach another's data. :class:`OrgScope` is that view's
key here. Every tenant transaction (``Database.org_tx``) and every tenant
repository is opened with one, and the only ways to get one are:

* :meth:`~control_plane.domain.principals.Principal.scope_for` — an
  authenticated caller asking for an org it may act in (permission before
  existence: another org's id answers exactly like a missing one);
* :meth:`OrgScope.to_authenticate` — while a credential that names its org
  (an admin key, a connect link, one of our tokens, a workload token) is being
  verified, before any principal exists;
* :meth:`OrgScope.for_platform_job` — background jobs of the deployment itself
  (keep-alive refreshes, key rotation, org creation and deletion by a platform
  admin), which say so in their name.

A bare string is refused at runtime as well as by the type checker, and a test
pins the modules allowed to call the two platform constructors, so a new call
site is a reviewed change rather than a habit.
"""

from __future__ import annotations

from typing import Final

from control_plane.ids import is_id

__all__ = ["OrgScope"]

_GRANT: Final = object()


class OrgScope:
    """One organization's id, obtainable only from an authenticated path."""

    __slots__ = ("_org_id", "_origin")

    def __init__(self, org_id: str, grant: object, origin: str) -> None:
        if grant is not _GRANT:
            raise TypeError(
                "an OrgScope comes from Principal.scope_for(), OrgScope.to_authenticate() "
                "or OrgScope.for_platform_job(), never from a bare org id"
            )
        if not isinstance(org_id, str) or not is_id(org_id):
            raise ValueError("an org scope needs a well-formed org id")
        self._org_id = org_id
        self._origin = origin

    @property
    def org_id(self) -> str:
        return self._org_id

    @property
    def origin(self) -> str:
        """How this scope was obtained (``principal``, ``authenticate:<what>``, ``job:<what>``)."""
        return self._origin

    @classmethod
    def to_authenticate(cls, org_id: str, *, credential: str) -> OrgScope:
        """Read the org's own records to verify a presented ``credential`` that names it.

        Nothing is authorized by this scope beyond the verification itself: the
        caller becomes a principal only if the credential checks out.
        """
        return cls(org_id, _GRANT, f"authenticate:{credential}")

    @classmethod
    def for_platform_job(cls, org_id: str, *, job: str) -> OrgScope:
        """A deployment job acting on every org in turn (no tenant caller behind it)."""
        return cls(org_id, _GRANT, f"job:{job}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OrgScope) and other._org_id == self._org_id

    def __hash__(self) -> int:
        return hash(("OrgScope", self._org_id))

    def __repr__(self) -> str:
        return f"OrgScope({self._org_id!r}, {self._origin!r})"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("an OrgScope is not serializable: obtain a new one where it is needed")


def _for_principal(org_id: str) -> OrgScope:
    """For :mod:`control_plane.domain.principals` only: an authenticated caller's scope."""
    return OrgScope(org_id, _GRANT, "principal")
