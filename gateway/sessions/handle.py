"""What transports hold: a session's shape, shared by the local `Session` and the cluster's
`RemoteSession` (a session another replica runs), so transports never ask which one they have."""

from typing import Protocol

from gateway.events.feed import Sink
from gateway.wire import client as cf
from gateway.wire.events import Actor
from gateway.wire.server import Ack, Attached, Reset, SessionInfo, Snapshot


class SessionHandle(Protocol):
    id: str
    principal: str

    @property
    def closed(self) -> bool: ...

    @property
    def epoch(self) -> str: ...

    @property
    def last_seq(self) -> int: ...

    def info(self) -> SessionInfo: ...

    async def snapshot(self) -> Snapshot: ...

    async def attach(self, sink: Sink, reply_id: str, connection: str, after: int, epoch: str | None) -> tuple[Attached | Reset, list[bytes]]: ...

    def detach(self, sink: Sink) -> None: ...

    async def execute(self, frame: cf.ClientFrame, actor: Actor) -> Ack: ...

    async def cancel_query(self, query_id: str) -> bool: ...

    async def close(self, reason: str) -> None: ...
