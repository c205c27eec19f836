"""The ONNX backend: scorer graphs (built by hand, no torch) run by onnxruntime."""
