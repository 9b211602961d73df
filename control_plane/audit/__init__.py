"""agentauth audit layer (see ARCHITECTURE.md)."""
