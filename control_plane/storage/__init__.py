"""agentauth storage layer (see ARCHITECTURE.md)."""
