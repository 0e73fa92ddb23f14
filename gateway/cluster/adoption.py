"""Finding sessions whose owner is gone and taking them over.

Invariants: a session is adopted by exactly one replica (the adopt script sets the lease only where
none is, raising the fence in the same step); only a lease that ran out unreleased makes a session
an orphan, so a live owner's sessions are never taken. Every replica looks every `lease_ttl_s / 3`
(jittered, so they don't all ask at once) and tries the orphans in its own random order: when an
owner dies, its sessions spread over the survivors instead of all going to the first to look.
After Redis was unreachable (or paused) for this replica, it adopts nothing for a lease time once
Redis answers again: the owners were cut off too, their leases ran out with nobody at fault, and
they take them again within that time (`Ownership.renew`) -- a Redis fault moves no session.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from gateway.cluster.ownership import Orphan, Ownership

log = logging.getLogger("gateway.cluster.adoption")

BATCH = 64  # orphans looked at per pass; more wait for the next pass
Adopt = Callable[[Orphan, int], Awaitable[None]]
"""Starts the session on this replica, given its orphan record and this replica's fencing token."""


class Adopter:
    def __init__(self, ownership: Ownership, interval_s: float, adopt: Adopt, quiet_s: float) -> None:
        self._ownership = ownership
        self._interval_s = interval_s
        self._quiet_s = quiet_s
        self._failing = False
        self._quiet_until = 0.0  # monotonic: no adoption by a look before then
        self._adopt = adopt
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._look_forever(), name="adoption")

    async def stop(self) -> None:
        """No more adoptions here (the replica drains or stops)."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _look_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s * random.uniform(0.5, 1.0))
            try:
                if self._failing or time.monotonic() < self._quiet_until:
                    await self._ownership.orphans(1)  # only whether Redis answers
                else:
                    await self.look()
            except (RedisError, OSError) as exc:
                if not self._failing:
                    log.warning("looking for sessions without an owner failed (retrying): %r", exc)
                self._failing = True
                continue
            if self._failing:
                self._failing = False
                self._quiet_until = time.monotonic() + self._quiet_s
                log.warning("Redis answers again: no adoption for %.0f s while owners take their leases again", self._quiet_s)

    async def look(self) -> int:
        """One pass: adopt what orphans this replica wins. Returns how many it adopted."""
        orphans = await self._ownership.orphans(BATCH)
        random.shuffle(orphans)
        adopted = 0
        for orphan in orphans:
            adopted += await self.adopt(orphan)
        return adopted

    async def adopt(self, orphan: Orphan) -> bool:
        """Adopt one session unless another replica was first (or this one is stopping, or holds it:
        its renewal takes the lease again)."""
        if self._stopped or self._ownership.holds(orphan.session_id):
            return False
        fence = await self._ownership.adopt(orphan.session_id)
        if fence is None:
            return False
        try:
            await self._adopt(orphan, fence)
        except Exception:  # the lease runs out again and another pass (here or elsewhere) retries
            log.exception("adopting session %s failed", orphan.session_id)
            self._ownership.forget(orphan.session_id)
            return False
        return True
