"""agentauth tokens layer (see ARCHITECTURE.md)."""
