"""Pending tool approvals and questions: deadlines, first answer wins, everyone sees the outcome.

The SDK waits forever for `can_use_tool`; the gateway doesn't: every request has a deadline after
which it is denied and an `expired` outcome is emitted. An answer applies only the permission
suggestions its profile permits, and a mode it sets is the session's mode (`on_mode`).
"""

import asyncio
import collections
import secrets
import time
from collections.abc import Callable
from typing import Any

import msgspec
from claude_agent_sdk.types import PermissionResultAllow, PermissionResultDeny, PermissionUpdate, ToolPermissionContext

from gateway.profiles import Profile
from gateway.wire import events as ev
from gateway.wire.client import PermissionResponse, QuestionResponse
from gateway.wire.errors import ErrorCode, GatewayError

QUESTION_TOOL = "AskUserQuestion"
EXPIRED_MESSAGE = "The user did not answer before the approval deadline."
PermissionResult = PermissionResultAllow | PermissionResultDeny


class Pending(msgspec.Struct):
    event: ev.PermissionRequest | ev.Question
    tool_input: dict[str, Any]
    suggestions: list[PermissionUpdate]
    future: "asyncio.Future[PermissionResult]"


class Approvals:
    def __init__(
        self,
        emit: Callable[[ev.EventBody], int],
        on_change: Callable[[], None],
        profile: Profile,
        on_mode: Callable[[str, ev.Actor], None],
    ) -> None:
        self._emit = emit
        self._on_change = on_change
        self._profile = profile
        self._on_mode = on_mode
        self._pending: dict[str, Pending] = {}
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def events(self) -> list[ev.PermissionRequest | ev.Question]:
        return [p.event for p in self._pending.values()]

    async def ask(self, tool_name: str, tool_input: dict[str, Any], ctx: ToolPermissionContext, timeout_s: float) -> PermissionResult:
        request_id = "req_" + secrets.token_hex(6)
        expires_at = int((time.time() + timeout_s) * 1000)
        event: ev.PermissionRequest | ev.Question
        if tool_name == QUESTION_TOOL:
            event = ev.Question(
                request_id=request_id, questions=list(tool_input.get("questions") or []), expires_at=expires_at, tool_use_id=ctx.tool_use_id
            )
        else:
            event = ev.PermissionRequest(
                request_id=request_id,
                tool_name=tool_name,
                input=tool_input,
                expires_at=expires_at,
                tool_use_id=ctx.tool_use_id,
                suggestions=[s.to_dict() for s in ctx.suggestions],
                title=ctx.title,
                display_name=ctx.display_name,
                description=ctx.description,
                decision_reason=ctx.decision_reason,
                agent_id=ctx.agent_id,
            )
        loop = asyncio.get_running_loop()
        pending = Pending(event, tool_input, list(ctx.suggestions), loop.create_future())
        self._pending[request_id] = pending
        timer = loop.call_later(timeout_s, self._expire, request_id)
        self._emit(event)
        self._on_change()
        try:
            return await pending.future
        except asyncio.CancelledError:
            # The CLI cancelled the request (interrupt) or the session is closing.
            if self._finish(request_id):
                self._emit(ev.RequestResolved(request_id=request_id, outcome="cancelled"))
                self._on_change()
            raise
        finally:
            timer.cancel()
            if self._finish(request_id):
                self._on_change()

    def answer_permission(self, frame: PermissionResponse, actor: ev.Actor) -> None:
        pending = self._take(frame.request_id)
        if frame.decision == "deny":
            message = frame.message or "The user denied this."
            self._resolve(pending, PermissionResultDeny(message=message, interrupt=frame.interrupt),
                          ev.RequestResolved(request_id=frame.request_id, outcome="denied", by=actor, message=message))
            return
        if isinstance(pending.event, ev.Question):
            raise GatewayError(ErrorCode.INVALID_ANSWER, "answer a question with question_response, or deny it")
        try:
            updates = [pending.suggestions[i] for i in frame.apply_suggestions]
        except IndexError:
            raise GatewayError(ErrorCode.INVALID_ANSWER, "apply_suggestions names a suggestion that doesn't exist") from None
        for update in updates:
            self._profile.check_update(update, pending.event.tool_name)
        for update in updates:
            update.destination = "session"  # other destinations write settings files on the host
        self._resolve(
            pending,
            PermissionResultAllow(updated_input=frame.updated_input, updated_permissions=updates or None),
            ev.RequestResolved(request_id=frame.request_id, outcome="allowed", by=actor, updated_input=frame.updated_input),
        )
        # The CLI switches mode as it takes the answer; the session follows, as after set_permission_mode.
        for update in updates:
            if update.type == "setMode" and update.mode is not None:
                self._on_mode(update.mode, actor)

    def answer_question(self, frame: QuestionResponse, actor: ev.Actor) -> None:
        pending = self._take(frame.request_id)
        if not isinstance(pending.event, ev.Question):
            raise GatewayError(ErrorCode.INVALID_ANSWER, "this request is a permission request; use permission_response")
        asked = {q.get("question") for q in pending.event.questions}
        unknown = sorted(set(frame.answers) - asked)
        if unknown or not frame.answers:
            raise GatewayError(ErrorCode.INVALID_ANSWER, f"answers must be keyed by the questions asked; unknown: {unknown}")
        flat = {q: a if isinstance(a, str) else ", ".join(a) for q, a in frame.answers.items()}
        self._resolve(
            pending,
            PermissionResultAllow(updated_input={**pending.tool_input, "answers": flat}),
            ev.RequestResolved(request_id=frame.request_id, outcome="answered", by=actor, answers=frame.answers),
        )

    def cancel_all(self) -> None:
        """Fail every pending request (the CLI died, the session closed, the conversation was reset):
        nobody is left to answer it. The caller is ending the turn and sets the state itself, so
        `on_change` is not called: no `running` between the requests' end and the turn's `result`."""
        for request_id in list(self._pending):
            pending = self._pending[request_id]
            self._finish(request_id)
            if not pending.future.done():
                pending.future.cancel()
            self._emit(ev.RequestResolved(request_id=request_id, outcome="cancelled"))

    def _take(self, request_id: str) -> Pending:
        pending = self._pending.get(request_id)
        if pending is not None and not pending.future.done():
            return pending
        # A done future still pending: the CLI cancelled the request a moment ago, and `ask`
        # reports it (`cancelled`) as soon as it runs again.
        if pending is not None or request_id in self._finished:
            raise GatewayError(ErrorCode.REQUEST_ALREADY_RESOLVED, f"request {request_id} was already resolved")
        raise GatewayError(ErrorCode.UNKNOWN_REQUEST, f"no pending request {request_id}")

    def _resolve(self, pending: Pending, result: PermissionResult, outcome: ev.RequestResolved) -> None:
        self._finish(pending.event.request_id)
        pending.future.set_result(result)
        self._emit(outcome)
        self._on_change()

    def _expire(self, request_id: str) -> None:
        pending = self._pending.get(request_id)
        if pending is None or pending.future.done():
            return
        self._resolve(pending, PermissionResultDeny(message=EXPIRED_MESSAGE),
                      ev.RequestResolved(request_id=request_id, outcome="expired", message=EXPIRED_MESSAGE))

    def _finish(self, request_id: str) -> bool:
        """Move a request from pending to finished; False when it already was."""
        if self._pending.pop(request_id, None) is None:
            return False
        self._finished[request_id] = None
        if len(self._finished) > 1000:
            self._finished.popitem(last=False)
        return True
