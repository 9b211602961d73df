"""agentauth control plane: the server package."""
