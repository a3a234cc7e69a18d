"""LoRA files: reading, formats (kohya, BFL, LyCORIS), the library that switches them, training."""
