"""Ingest: what a transport received, as checked views of its bytes (no grpc, no protobuf)."""
