"""A typed HTTP client for numa-balloon (sync and async) that knows the API's habits."""
