"""Open Inference Protocol v2: gRPC and REST transports over the shared runtime and batcher."""
