"""The session core: one conversation, its state, approvals and event feed, independent of transport."""
