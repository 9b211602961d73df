"""Adapters that put :class:`agentauth.AsyncTokenValidator` in front of a server.

* :mod:`agentauth.integrations.grpc_auth` - a ``grpc.aio`` server interceptor.
* :mod:`agentauth.integrations.aiohttp_auth` - an aiohttp web middleware
  (aiohttp is imported only when the middleware is built; the SDK does not
  depend on it).

Import the submodule you need; this package imports neither.
"""
