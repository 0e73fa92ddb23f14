"""Numbered, replayable session events: the log that stores them and the feed that fans them out."""
