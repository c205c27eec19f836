"""Generated from proto/poolscore/v1/*.proto: the wire contract, versioned by this name."""
