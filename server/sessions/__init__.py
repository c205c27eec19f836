"""Sessions: each one a streaming top-K committed batch by batch; the store with its limits."""
