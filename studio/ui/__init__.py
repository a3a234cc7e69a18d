"""The Gradio studio. Never imports torch: it talks to a Studio object handed in by app.py."""

from studio.ui.studio_ui import build

__all__ = ["build"]
