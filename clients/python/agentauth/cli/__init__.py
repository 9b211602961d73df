"""The ``agentauth`` admin CLI: ``agentauth [SHARED FLAGS] GROUP VERB [flags]``, one RPC each."""

from agentauth.cli._main import main

__all__ = ["main"]
