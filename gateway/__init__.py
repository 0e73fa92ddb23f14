"""agent-gateway: a realtime gateway in front of Claude Agent SDK sessions."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
