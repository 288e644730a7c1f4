"""modelops serving: model server, metrics sidecar, router, model fetching and verification."""
