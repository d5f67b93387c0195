"""The gateway: contributed nodes in the request path (discovery, health, routing, fair share)."""
