"""Generated protobuf and gRPC modules for agentauth.v1."""
