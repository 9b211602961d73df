"""Outbound network access to URLs that organizations configure."""
