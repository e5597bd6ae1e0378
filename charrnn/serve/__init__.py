"""charrnn serve: models behind an HTTP API that speaks OpenAI's completions protocol, with
continuous batching (install with `pip install 'charrnn[serve]'`).

    from charrnn.serve import create_app
    app = create_app(["runs/names"])        # an ASGI app, e.g. for uvicorn or a Mount

Rooms: protocol (the request fields, errors and response shapes), engine (one model's loop
over its continuous batch, charrnn.batching), app (the Starlette routes, the key, server-sent
events, the page), server (uvicorn, signals and shutdown, for the CLI).
"""
from .app import create_app

__all__ = ["create_app"]
