"""Flux Studio.

On a ZeroGPU Space ``spaces`` must be imported before anything asks torch about CUDA (diffusers, torchao and
bitsandbytes do when imported), or it refuses to start: every entry point imports this package first, so it is done
here (``studio.spaces_support.import_spaces_first``; nothing happens elsewhere).
"""

from studio.spaces_support import import_spaces_first

import_spaces_first()
