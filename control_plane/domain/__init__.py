"""agentauth domain layer (see ARCHITECTURE.md)."""
