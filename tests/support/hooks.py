"""Hook callbacks for profiles in tests (`Hook.factory`)."""

from typing import Any


def deny_forbidden_commands() -> Any:
    """A PreToolUse hook that denies any Bash command mentioning "forbidden", even an allowed one."""

    async def hook(hook_input: dict[str, Any], tool_use_id: str | None, context: Any) -> dict[str, Any]:
        if "forbidden" in str(hook_input.get("tool_input", {}).get("command", "")):
            return {"hookSpecificOutput": {
                "hookEventName": "PreToolUse", "permissionDecision": "deny", "permissionDecisionReason": "the operator's hook said no",
            }}
        return {}

    return hook
