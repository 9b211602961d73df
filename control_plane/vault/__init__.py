"""agentauth vault layer (see ARCHITECTURE.md)."""
