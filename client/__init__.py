"""poolscore client: call a poolscore server from Python."""
