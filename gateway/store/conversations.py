"""The SDK's `SessionStore` on Redis: every CLI's transcript mirrored, so a new CLI (after a crash,
on a wiped disk, on another host) resumes the conversation from Redis.

Invariant: one call is one round trip (a pipeline; the conversation's own keys change in one Lua
script, atomically), and no call reads or writes more than the keys it names — O(entries) for
`append`/`load`, O(subagents) for a cascade. Entries are stored as the JSON the CLI wrote;
an entry whose `uuid` the key already holds is skipped (the SDK retries a failed batch, and a
batch that failed after it landed must not land twice).

Keys, with `P` the key prefix, `pk` the project key (the gateway session's id: see
`SessionConversations`) and `sid` the CLI's session id as a hash tag (one conversation, one Cluster slot):
    P:cs:{sid}:pk:main              List   the main transcript, one JSON entry per element
    P:cs:{sid}:pk:main:ids          Set    uuids already in it
    P:cs:{sid}:pk:sub:<subpath>     List   a subagent transcript
    P:cs:{sid}:pk:subids:<subpath>  Set    its uuids
    P:cs:{sid}:pk:subs              Set    the subpaths
    P:cs:project:pk:sessions        ZSET   sid -> mtime (epoch ms of the last main append)
    P:cs:project:pk:summaries       Hash   sid -> the SDK's folded summary (JSON)
Every key of a conversation expires `ttl_s` after its last append; `delete_project` removes a
gateway session's conversations at once when it closes.

Summaries are folded here (the SDK's pure `fold_session_summary`) from the last one this process
wrote, so appends to one conversation must not race: the SDK serializes a client's appends, and one
conversation has one CLI, on its session's owner.
"""

import collections
import time
from typing import Any

import msgspec
from claude_agent_sdk import SessionStore, fold_session_summary
from claude_agent_sdk.types import (
    SessionKey,
    SessionListSubkeysKey,
    SessionStoreEntry,
    SessionStoreListEntry,
    SessionSummaryEntry,
)
from redis.asyncio import Redis

# KEYS: list, its uuid set, the subpath set, main list, main uuid set.
# ARGV: ttl ms, subpath ('' for main), sub-list prefix, sub-uuid prefix, then (uuid, entry) pairs.
APPEND = """
local added = 0
for i = 5, #ARGV, 2 do
  if ARGV[i] == '' or redis.call('SADD', KEYS[2], ARGV[i]) == 1 then
    redis.call('RPUSH', KEYS[1], ARGV[i + 1])
    added = added + 1
  end
end
if ARGV[2] ~= '' then redis.call('SADD', KEYS[3], ARGV[2]) end
local ttl = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ttl) end
for _, sub in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  redis.call('PEXPIRE', ARGV[3] .. sub, ttl)
  redis.call('PEXPIRE', ARGV[4] .. sub, ttl)
end
return added
"""

# KEYS: main list, main uuid set, subpath set. ARGV: sub-list prefix, sub-uuid prefix.
DELETE_CONVERSATION = """
for _, sub in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  redis.call('DEL', ARGV[1] .. sub, ARGV[2] .. sub)
end
return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
"""

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class RedisSessionStore(SessionStore):
    """All conversations of one deployment, under `<key_prefix>:cs:`."""

    def __init__(self, redis: Redis, key_prefix: str, ttl_s: float, summary_cache: int = 4096) -> None:
        self._redis = redis
        self._prefix = f"{key_prefix}:cs:"
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._append = redis.register_script(APPEND)
        self._delete = redis.register_script(DELETE_CONVERSATION)
        # The last summary written per conversation (a fold needs the previous one): bounded, and a
        # miss costs one HGET.
        self._summaries: collections.OrderedDict[tuple[str, str], SessionSummaryEntry] = collections.OrderedDict()
        self._summary_cache = summary_cache

    # ---- keys ----------------------------------------------------------------------------

    def _base(self, project_key: str, session_id: str) -> str:
        return f"{self._prefix}{{{session_id}}}:{project_key}:"

    def _project(self, project_key: str) -> str:
        return f"{self._prefix}project:{project_key}:"

    def _list_key(self, key: SessionKey) -> tuple[str, str]:
        """(list, uuid set) of the key's transcript."""
        base, subpath = self._base(key["project_key"], key["session_id"]), key.get("subpath")
        return (base + "sub:" + subpath, base + "subids:" + subpath) if subpath else (base + "main", base + "main:ids")

    # ---- the protocol --------------------------------------------------------------------

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        if not entries:
            return
        project_key, session_id, subpath = key["project_key"], key["session_id"], key.get("subpath") or ""
        base = self._base(project_key, session_id)
        items, args = self._list_key(key), [self._ttl_ms, subpath, base + "sub:", base + "subids:"]
        for entry in entries:
            args += (entry.get("uuid") or "", _encode(entry))
        keys = [*items, base + "subs", base + "main", base + "main:ids"]
        if subpath:
            await self._append(keys=keys, args=args)
            return
        summary = fold_session_summary(await self._previous_summary(project_key, session_id), key, entries)
        summary["mtime"] = mtime = _storage_time(summary)
        project = self._project(project_key)
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._append(keys=keys, args=args, client=pipe)
            pipe.zadd(project + "sessions", {session_id: mtime})
            pipe.hset(project + "summaries", session_id, _encode(summary))
            pipe.pexpire(project + "sessions", self._ttl_ms)
            pipe.pexpire(project + "summaries", self._ttl_ms)
            await pipe.execute()
        self._remember(project_key, session_id, summary)

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        raw = await self._redis.lrange(self._list_key(key)[0], 0, -1)
        return [_decode(item) for item in raw] if raw else None

    async def list_sessions(self, project_key: str) -> list[SessionStoreListEntry]:
        rows = await self._redis.zrange(self._project(project_key) + "sessions", 0, -1, withscores=True)
        return [{"session_id": sid.decode(), "mtime": int(score)} for sid, score in rows]

    async def list_session_summaries(self, project_key: str) -> list[SessionSummaryEntry]:
        rows = await self._redis.hvals(self._project(project_key) + "summaries")
        return [_decode(row) for row in rows]

    async def delete(self, key: SessionKey) -> None:
        project_key, session_id, subpath = key["project_key"], key["session_id"], key.get("subpath")
        base = self._base(project_key, session_id)
        if subpath:
            async with self._redis.pipeline(transaction=True) as pipe:  # one slot: atomic
                pipe.delete(*self._list_key(key))
                pipe.srem(base + "subs", subpath)
                await pipe.execute()
            return
        project = self._project(project_key)
        async with self._redis.pipeline(transaction=False) as pipe:
            await self._delete(keys=[base + "main", base + "main:ids", base + "subs"], args=[base + "sub:", base + "subids:"], client=pipe)
            pipe.zrem(project + "sessions", session_id)
            pipe.hdel(project + "summaries", session_id)
            await pipe.execute()
        self._summaries.pop((project_key, session_id), None)

    async def list_subkeys(self, key: SessionListSubkeysKey) -> list[str]:
        members = await self._redis.smembers(self._base(key["project_key"], key["session_id"]) + "subs")
        return [m.decode() for m in members]

    # ---- beyond the protocol -------------------------------------------------------------

    async def copy(self, session_id: str, from_project: str, to_project: str) -> bool:
        """Copy a conversation (its subagent transcripts too) to another project key: a fork's, whose
        CLI resumes it from there. False when there is nothing to copy."""
        source: SessionKey = {"project_key": from_project, "session_id": session_id}
        entries = await self.load(source)
        if entries is None:
            return False
        await self.append({"project_key": to_project, "session_id": session_id}, entries)
        for subpath in await self.list_subkeys({"project_key": from_project, "session_id": session_id}):
            sub = await self.load({**source, "subpath": subpath})
            if sub:
                await self.append({"project_key": to_project, "session_id": session_id, "subpath": subpath}, sub)
        return True

    async def delete_project(self, project_key: str) -> None:
        """Every conversation under a project key: a closed gateway session's (`SessionConversations`)."""
        sessions = await self._redis.zrange(self._project(project_key) + "sessions", 0, -1)
        async with self._redis.pipeline(transaction=False) as pipe:
            for raw in sessions:
                session_id = raw.decode()
                base = self._base(project_key, session_id)
                await self._delete(keys=[base + "main", base + "main:ids", base + "subs"], args=[base + "sub:", base + "subids:"], client=pipe)
                self._summaries.pop((project_key, session_id), None)
            pipe.delete(self._project(project_key) + "sessions", self._project(project_key) + "summaries")
            await pipe.execute()

    async def _previous_summary(self, project_key: str, session_id: str) -> SessionSummaryEntry | None:
        cached = self._summaries.get((project_key, session_id))
        if cached is not None:
            return cached
        raw = await self._redis.hget(self._project(project_key) + "summaries", session_id)
        return _decode(raw) if raw else None

    def _remember(self, project_key: str, session_id: str, summary: SessionSummaryEntry) -> None:
        self._summaries[(project_key, session_id)] = summary
        self._summaries.move_to_end((project_key, session_id))
        if len(self._summaries) > self._summary_cache:
            self._summaries.popitem(last=False)


class SessionConversations(SessionStore):
    """One gateway session's view of the store, handed to its CLIs: the project key is the gateway
    session's id, whatever key the SDK derives. The SDK derives it from the working directory's
    absolute path, which is each replica's own (`sessions_dir` differs between hosts and replicas):
    keyed by it, a CLI that another replica starts for the session (adoption, a wake after
    failover) would find no conversation to resume."""

    def __init__(self, store: RedisSessionStore, session_id: str) -> None:
        self._store = store
        self._project_key = session_id

    def _key(self, key: SessionKey) -> SessionKey:
        return {**key, "project_key": self._project_key}

    async def append(self, key: SessionKey, entries: list[SessionStoreEntry]) -> None:
        await self._store.append(self._key(key), entries)

    async def load(self, key: SessionKey) -> list[SessionStoreEntry] | None:
        return await self._store.load(self._key(key))

    async def list_sessions(self, project_key: str) -> list[SessionStoreListEntry]:
        return await self._store.list_sessions(self._project_key)

    async def list_session_summaries(self, project_key: str) -> list[SessionSummaryEntry]:
        return await self._store.list_session_summaries(self._project_key)

    async def delete(self, key: SessionKey) -> None:
        await self._store.delete(self._key(key))

    async def list_subkeys(self, key: SessionListSubkeysKey) -> list[str]:
        return await self._store.list_subkeys({**key, "project_key": self._project_key})


def _storage_time(previous: dict[str, Any]) -> int:
    """Now in epoch ms, strictly after the previous write's stamp (two appends in one millisecond
    still order), on the clock `list_sessions` reports."""
    return max(int(time.time() * 1000), int(previous.get("mtime") or 0) + 1)
