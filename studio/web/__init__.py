"""HTML routes outside Gradio: gallery, detail, share pages, visitor identity, security headers, one stylesheet."""
