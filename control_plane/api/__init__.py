"""agentauth api layer (see ARCHITECTURE.md)."""
