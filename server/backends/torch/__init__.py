"""The torch backend: fused kernels (compiled by inductor), the CPU/CUDA device, model runners."""
