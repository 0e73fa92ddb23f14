"""Thin transports over the session core: WebSocket first, HTTP + SSE as the fallback."""
