"""The gRPC edge: servicers that translate ``qroute.v1`` messages to engine
commands and back, authentication, and the mapping of errors to statuses."""
