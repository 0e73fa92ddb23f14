"""An offline stand-in for the Anthropic Messages API that drives the real Claude Code CLI.

Replies are scripted from the prompt (`SCRIPT:<name>` or `SCRIPT:{json}`), so tests and demos
get real CLI behaviour (streaming, tools, permission prompts) without a model or network.
"""

from .app import RecordedRequest, create_app
from .script import BUILTINS, FINISHED, Script, ScriptBlock, expected_texts, plan_reply
from .server import ScriptedModelServer, cli_env

__all__ = [
    "BUILTINS",
    "FINISHED",
    "RecordedRequest",
    "Script",
    "ScriptBlock",
    "ScriptedModelServer",
    "cli_env",
    "create_app",
    "expected_texts",
    "plan_reply",
]
