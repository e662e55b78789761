"""HTTP transport of the service: the /predict fast path, the Starlette routes, the body reader."""
