"""Code shared by every mbd service: settings, the wire schema, topics and client factories."""
