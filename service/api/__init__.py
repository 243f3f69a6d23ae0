"""The HTTP layer: routers by resource, request/response schemas, dependencies."""
