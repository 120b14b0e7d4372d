"""HTTP layer: thin routers that parse, authorize, call one core operation and render."""
