"""Flux Studio: ``python app.py [--host H] [--port P] [--auth user:pass]`` serves the studio.

Parses flags → Settings → Studio (engine + history) → Gradio UI mounted on a FastAPI app with /healthz.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

log = logging.getLogger("studio.app")
MAX_UPLOAD = "50mb"  # largest file a visitor may upload (images are also capped in pixels)
REPLICAS_STOP_S = 10  # with --replicas: seconds open connections get on SIGTERM before Ray is stopped


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Launch options (docs/cli.md); GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are honoured too."""
    parser = argparse.ArgumentParser(description="Flux Studio")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--auth", default=None, help="user:pass")
    parser.add_argument("--multi-user", action="store_true", default=bool(os.environ.get("SPACE_ID")))
    parser.add_argument("--share-base-url", default=None)
    parser.add_argument(
        "--allowed-hosts",
        default=os.environ.get("STUDIO_ALLOWED_HOSTS", ""),
        help="extra host names to answer to, comma-separated (* = any; see studio/web/headers.py)",
    )
    parser.add_argument("--model", default=None, help="overrides STUDIO_MODEL")
    parser.add_argument("--data-dir", default=None, help="overrides STUDIO_DATA_DIR")
    parser.add_argument("--queue-size", type=int, default=16, help="waiting generations before 'queue full'")
    parser.add_argument(
        "--replicas",
        type=int,
        default=None,
        help="run N engine replicas on Ray Serve behind this front end (RAY_ADDRESS joins a cluster; docs/scaling.md)",
    )
    return parser.parse_args(argv)


def private_gradio_folder() -> None:
    """Gradio keeps uploads and the files it serves in ``GRADIO_TEMP_DIR``; unless set, use a folder only this
    user can read (not the world-readable ``/tmp/gradio`` shared with every other program and user)."""
    if os.environ.get("GRADIO_TEMP_DIR"):
        return
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.gettempdir()) / f"flux-studio-gradio-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)


def settings_from_args(args: argparse.Namespace):  # noqa: ANN201 - Settings (imported late, after Gradio's folder)
    """The settings, resolved once: flags > STUDIO_* variables > the server's defaults.

    ``app=True``: coalescing is on by default (STUDIO_COALESCE_MS, 30 ms; 0 on ZeroGPU); the CLI's default is 0.
    """
    from studio.core import settings as settings_mod

    return settings_mod.from_env(app=True, model=args.model, data_dir=args.data_dir, queue_size=args.queue_size)


def create_app(args: argparse.Namespace):  # noqa: ANN201 - FastAPI app
    """The FastAPI app with the studio mounted at ``/``."""
    private_gradio_folder()  # before Gradio is imported: it reads the folder at import time
    import gradio as gr
    from fastapi import FastAPI

    from studio.service import Studio
    from studio.ui import build
    from studio.ui.api import COALESCING_SLOTS
    from studio.ui.studio_ui import UIContext
    from studio.web.gallery import register_gallery_routes
    from studio.web.headers import install_security_headers
    from studio.web.share import register_share_routes

    settings = settings_from_args(args)
    if args.replicas is not None:  # Ray Serve: the engines run in replicas; Ray is imported only here
        from studio.serve.remote import start_remote_studio

        studio = start_remote_studio(settings, args.replicas)
    else:
        studio = Studio(settings)
    swept = studio.store.sweep_orphans()  # image files a crash left without a record
    if swept:
        log.warning("removed %d orphan image files left by an interrupted run", len(swept))
    defaults = studio.engine.defaults()
    ctx = UIContext(
        studio=studio,
        model=studio.engine.model_name,
        width=defaults.width,
        height=defaults.height,
        steps=defaults.steps,
        guidance=defaults.guidance,
        uses_distilled_guidance=_guidance_embeds(studio) and defaults.guidance_distilled,
        multi_user=args.multi_user,
        share_base_url=args.share_base_url.rstrip("/") if args.share_base_url else None,
        gpu_slots=studio.gpu_slots
        if args.replicas is not None
        else COALESCING_SLOTS
        if studio.engine.coalescer is not None
        else 1,
    )
    demo = build(ctx).queue(default_concurrency_limit=1, max_size=settings.queue_size)
    app = FastAPI(title="Flux Studio", docs_url=None, redoc_url=None, openapi_url=None)  # no schema to anyone

    @app.middleware("http")
    async def share_query(request, call_next):  # noqa: ANN001, ANN202 - Starlette middleware
        # On Hugging Face Spaces only the query string reaches the app: /?share=<token> → the share page.
        token = request.query_params.get("share") if request.url.path == "/" else None
        if token:
            from urllib.parse import quote

            from fastapi.responses import RedirectResponse

            return RedirectResponse(f"/share/{quote(token, safe='')}", status_code=307)
        return await call_next(request)

    @app.get("/healthz")
    def healthz() -> dict:
        body = {"status": "ok", "model": studio.engine.model_name}
        if args.replicas is not None:
            body["replicas"] = studio.replica_counts()  # {"ready", "total"}: Serve's running replicas
        return body

    auth = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            raise SystemExit("--auth must look like user:pass")
        auth = (user, password)
    install_security_headers(app, args.host, args.share_base_url, args.allowed_hosts)
    register_share_routes(app, studio, args.share_base_url)
    from studio.web.login import logged_in_user

    def logged_in(request):  # noqa: ANN001, ANN202 - the studio's Gradio login also opens the gallery
        return logged_in_user(app, request)

    if args.multi_user:  # each visitor's gallery shows only their own records (HF user or browser cookie)
        from studio.web import visitors

        visitors.install(app)
        register_gallery_routes(app, studio, auth, owner_of=visitors.owner, logged_in=logged_in)
    else:
        register_gallery_routes(app, studio, auth, logged_in=logged_in)
    settings.images_dir.mkdir(parents=True, exist_ok=True)
    # Gradio serves only its own upload/cache folders: stored images reach browsers through the owner-checked
    # /gallery/image and /share routes, and the data folder is blocked outright.
    mounted = gr.mount_gradio_app(
        app,
        demo,
        path="",
        auth=auth,
        allowed_paths=[],
        blocked_paths=[str(settings.data_dir.resolve())],
        max_file_size=MAX_UPLOAD,
        show_error=True,
        footer_links=["api"],
        app_kwargs={"openapi_url": None},  # the mounted app serves no /openapi.json either
        css=__import__("studio.ui.studio_ui", fromlist=["CSS"]).CSS,
    )
    # launch() sets this; mounting does not, and without it Gradio skips its checks that a file in an event's
    # payload was uploaded (preprocess) or created by the app (postprocess).
    demo.has_launched = True
    return mounted


def _guidance_embeds(studio) -> bool:  # noqa: ANN001 - Studio or RemoteStudio
    """Whether the served model takes a distilled guidance value (a replica's answer with --replicas)."""
    if hasattr(studio.engine, "guidance_embeds"):
        return bool(studio.engine.guidance_embeds)
    return bool(studio.engine.pipe.transformer.config.guidance_embeds)


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted."""
    import uvicorn

    from studio.core.errors import StudioError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.auth and not args.multi_user:
        log.warning("serving on %s without --auth: anyone who can reach this port can use the studio", args.host)
    try:
        app = create_app(args)
    except StudioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"Flux Studio on http://{args.host}:{args.port}", flush=True)
    # With --replicas, stop within a bound on SIGTERM even while pages keep streams open: Ray stops at exit, and a
    # front end killed later by its supervisor would leave Ray's agent processes behind (docs/scaling.md).
    graceful = {"timeout_graceful_shutdown": REPLICAS_STOP_S} if args.replicas is not None else {}
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", **graceful)


if __name__ == "__main__":
    main()
