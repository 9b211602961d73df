"""Adapters between agentauth and the frameworks around it.

Token validation in front of a server (:class:`agentauth.AsyncTokenValidator`):

* :mod:`agentauth.integrations.grpc_auth` - a ``grpc.aio`` server interceptor.
* :mod:`agentauth.integrations.aiohttp_auth` - an aiohttp web middleware
  (aiohttp is imported only when the middleware is built; the SDK does not
  depend on it).

Connector tools for model frameworks, all over one
:class:`agentauth.integrations.tool_runner.ToolRunner` (which also documents
how ``gmail.send_message`` becomes a model-legal name):

* :mod:`agentauth.integrations.openai_tools` - function tools for Chat
  Completions and the Responses API (imports no openai code).
* :mod:`agentauth.integrations.anthropic_tools` - Messages API tools and
  ``tool_use`` -> ``tool_result`` (imports no anthropic code).
* :mod:`agentauth.integrations.langchain_tools` - ``StructuredTool`` objects
  (langchain-core is imported only when they are built; ``agentauth[langchain]``).

Import the submodule you need; this package imports none of them.
"""
