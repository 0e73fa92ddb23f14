"""Every Redis key name of the cluster in one place (the layout is in docs/OPERATIONS.md).

One session's keys share the hash tag `{sid}`, so they live in one Cluster slot and a Lua script may
touch them all.
"""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SessionKeys:
    log: str
    meta: str
    live: str
    owner: str
    acks: str

    @classmethod
    def of(cls, prefix: str, session_id: str) -> "SessionKeys":
        base = f"{prefix}:{{{session_id}}}"
        return cls(log=f"{base}:log", meta=f"{base}:meta", live=f"{base}:live", owner=f"{base}:owner", acks=f"{base}:acks")


def principal_index(prefix: str, principal: str) -> str:
    return f"{prefix}:principal:{principal}"


def opened(prefix: str, principal: str, frame_id: str) -> str:
    """The session an `open` frame id made, so the frame re-sent to any replica finds it."""
    return f"{prefix}:opened:{principal}:{frame_id}"


def watched(prefix: str, session_id: str) -> str:
    """Present (with a short TTL) while some replica other than the owner has clients attached."""
    return f"{prefix}:{{{session_id}}}:watched"


def replicas(prefix: str) -> str:
    return f"{prefix}:replicas"


def replica_channel(prefix: str, replica_id: str) -> str:
    return f"{prefix}:replica:{replica_id}"
