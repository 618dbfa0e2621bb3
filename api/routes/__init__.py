"""The prediction API's routers, one per resource."""
