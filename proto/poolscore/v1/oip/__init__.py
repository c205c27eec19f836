"""The Open Inference Protocol messages poolscore answers (generated from inference.proto)."""
