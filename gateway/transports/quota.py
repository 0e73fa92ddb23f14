"""Connections per principal on this process: attached WebSockets and SSE streams together.

Invariant: a principal never holds more than `max_connections_per_principal` of them here; every
`take` that succeeded is matched by exactly one `give_back` (when the connection ends). A refusal
is `too_many_connections` (an `error` frame for `open`/`attach`, HTTP 429 for an SSE request), and
nothing else changes: the principal's other connections and sessions go on.
"""

from gateway.config import Settings
from gateway.wire.errors import ErrorCode, GatewayError


class ConnectionQuota:
    __slots__ = ("_settings", "_held")

    def __init__(self, settings: Settings) -> None:
        self._settings = settings  # read at each take: the limit is the settings' current one
        self._held: dict[str, int] = {}

    def take(self, principal: str) -> None:
        """Count one more connection of `principal`, or raise `too_many_connections`."""
        held = self._held.get(principal, 0)
        limit = self._settings.max_connections_per_principal
        if held >= limit:
            raise GatewayError(ErrorCode.TOO_MANY_CONNECTIONS, f"at most {limit} connections (WebSockets and SSE streams) per principal")
        self._held[principal] = held + 1

    def give_back(self, principal: str) -> None:
        held = self._held[principal] - 1
        if held:
            self._held[principal] = held
        else:
            del self._held[principal]  # no entry per principal that has nothing open

    def held(self, principal: str) -> int:
        return self._held.get(principal, 0)
