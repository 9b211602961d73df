"""agentauth services layer (see ARCHITECTURE.md)."""
