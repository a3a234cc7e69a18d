"""How a handler refuses bad input: a message for the user, one log line, no traceback.

Gradio prints a traceback for every ``gr.Error`` unless told not to; tracebacks are for real faults only.
"""

from __future__ import annotations

import logging

import gradio as gr

log = logging.getLogger("studio.ui")


def user_error(message: str) -> gr.Error:
    """The error to raise for a user's mistake (shown in the UI; logged as one line)."""
    log.info("refused: %s", message)
    return gr.Error(message, print_exception=False)


def internal_error(exc: BaseException) -> gr.Error:
    """The error to raise for a real fault: the traceback goes to the log once, the user gets a short notice."""
    log.error("internal error", exc_info=exc)
    return gr.Error(
        f"internal error ({type(exc).__name__}) — the studio keeps running; see the server log", print_exception=False
    )
