"""HTTP layer: thin routers that parse, authorize, load state, call the engine and persist."""
