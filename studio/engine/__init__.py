"""The resident pipeline and everything that runs on it: Engine, the sampling loop, conditioning, caches, coalescing, quantization, memory."""
