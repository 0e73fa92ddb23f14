"""In-process MCP servers for profiles in tests (`SdkServer.factory`)."""

from typing import Any

from claude_agent_sdk import create_sdk_mcp_server, tool


@tool("add", "Add two integers", {"a": int, "b": int})
async def add(args: dict[str, Any]) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": f"sum={args['a'] + args['b']}"}]}


def calculator() -> Any:
    return create_sdk_mcp_server("calc", tools=[add])
