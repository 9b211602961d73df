"""The ``agentauth`` admin CLI: ``agentauth GROUP VERB [flags]``, one RPC per command."""

from agentauth.cli._main import main

__all__ = ["main"]
