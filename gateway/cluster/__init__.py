"""Many replicas, one set of sessions: the registry, ownership, forwarding and the remote view of a session."""
