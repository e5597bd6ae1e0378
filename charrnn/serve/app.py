"""The ASGI app (Starlette): routes, the API key, request bodies, and streaming as server-sent
events. Each served model has its engine (charrnn.serve.engine); the protocol's fields and
shapes are charrnn.serve.protocol's.

    POST /v1/completions   OpenAI's completions, streamed or not
    GET  /v1/models        the served models
    GET  /health           {"status": "ok" or "draining", each model's streams and waiting}
    GET  /                 a page to try the models in a browser (needs no key to load)
"""
import asyncio
import contextlib
import hmac
import json
import os
from importlib import resources

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Route

from ..checkpoint import resolve
from ..config import ServeConfig
from ..errors import UsageError
from ..sampling import Sampler
from . import protocol
from .engine import Engine, Job
from .protocol import ApiError

BODY_SLACK = 64 * 1024  # bytes a request body may have beyond its prompts' share
DISCONNECT_POLL_S = 0.25  # how often a waiting non-streamed request checks for its client
MAX_COALESCED = 64  # queued events a stream's one write may carry


def model_names(runs):
    """{name: checkpoint}: each run directory named by its own name, a checkpoint file by
    its stem; a UsageError when two would share a name."""
    names = {}
    for run in runs:
        path = os.path.normpath(os.fspath(run))
        name = (os.path.basename(path) if os.path.isdir(path)
                else os.path.splitext(os.path.basename(path))[0])
        if name in names:
            raise UsageError(f"two models would be named {name!r} ({names[name]} and {run}); "
                             "serve runs whose directories have different names")
        names[name] = resolve(path)
    return names


class Service:
    """The served models by name, each loaded on the CPU with its engine running; limits from
    a ServeConfig."""

    def __init__(self, runs, limits):
        self.limits = limits
        self.engines = {}
        self.draining = False
        try:
            for name, checkpoint in model_names(runs).items():
                self.engines[name] = Engine(name, Sampler.load(checkpoint), limits)
        except BaseException:
            self.close()
            raise

    def engine(self, name):
        if name not in self.engines:
            raise ApiError(404, f"model {name!r} is not served here; the models are "
                                f"{', '.join(sorted(self.engines))} (GET /v1/models)",
                           param="model", code="model_not_found")
        return self.engines[name]

    def drain(self, grace):
        """No new requests; live streams end within grace seconds (Engine.drain)."""
        self.draining = True
        for engine in self.engines.values():
            engine.drain(grace)

    def close(self):
        for engine in self.engines.values():
            engine.close()


def create_app(runs, limits=ServeConfig(), api_key=None):
    """The ASGI app serving each run (a run directory or checkpoint, named as model_names
    says). With api_key, every request but the page's needs `Authorization: Bearer KEY`.
    app.state.service is the Service: drain(grace) before a shutdown, close() after (the
    app's lifespan closes it too)."""
    service = Service(runs, limits)

    async def completions(request):
        completion = protocol.parse(await _json(request, limits), limits)
        engine = service.engine(completion.model)
        prompts = [engine.encode(p, completion.unknown) for p in completion.prompts]
        loop = asyncio.get_running_loop()
        job = Job(completion, prompts, asyncio.Queue(), loop)
        engine.submit(job)
        if completion.stream:
            return StreamingResponse(_events(engine, job), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return await _collect(engine, job, request)

    async def models(request):
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "charrnn",
             "vocab_size": e.sampler.model.config.vocab_size,
             "description": _describe(e.sampler)} for name, e in service.engines.items()]})

    async def health(request):
        return JSONResponse({"status": "draining" if service.draining else "ok",
                             "models": {n: e.load() for n, e in service.engines.items()}})

    async def page(request):
        return HTMLResponse(resources.files(__package__).joinpath("page.html").read_text(
            encoding="utf-8"))

    async def api_error(request, exc):
        return JSONResponse(exc.body(), status_code=exc.status)

    async def http_error(request, exc):
        fix = {404: "the routes are POST /v1/completions, GET /v1/models, GET /health and /",
               405: "see the allowed methods in the Allow header"}.get(exc.status_code, "")
        return JSONResponse(ApiError(exc.status_code, f"{exc.detail}; {fix}".rstrip("; ")).body(),
                            status_code=exc.status_code, headers=exc.headers)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        service.close()

    app = Starlette(routes=[Route("/", page), Route("/health", health),
                            Route("/v1/models", models),
                            Route("/v1/completions", completions, methods=["POST"])],
                    exception_handlers={ApiError: api_error, HTTPException: http_error},
                    lifespan=lifespan)
    app.state.service = service
    if api_key:
        app.add_middleware(_BearerKey, key=api_key)
    return app


class _BearerKey:
    """Every request but GET / must carry `Authorization: Bearer <key>` (401 otherwise)."""

    def __init__(self, app, key):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/":
            given = dict(scope["headers"]).get(b"authorization", b"")
            scheme, _, token = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                error = ApiError(401, "a valid API key is needed: send the header "
                                      "'Authorization: Bearer KEY' with the key the server "
                                      "was started with", code="invalid_api_key")
                await JSONResponse(error.body(), status_code=401,
                                   headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _json(request, limits):
    """The request body as JSON, read up to a size its prompts could need."""
    most = 4 * limits.max_prompt * limits.max_streams + BODY_SLACK  # 4 bytes a character
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > most:
            raise ApiError(413, f"the request body is over {most} bytes; send shorter or "
                                "fewer prompts")
    try:
        return json.loads(body)
    except ValueError as e:
        raise ApiError(400, f"the request body is not valid JSON ({e}); send a JSON object "
                            "of completions fields") from None


def _describe(sampler):
    cfg = sampler.model.config
    return (f"{cfg.spec.label} {cfg.num_layers}x{cfg.hidden_size}, "
            f"{cfg.vocab_size} {'bytes' if sampler.bytes else 'characters'}")


class _Answer:
    """The events of one job, as OpenAI's choices: each choice's pieces of text (joined once,
    in response) and logprobs so far, its length, its end, and the usage."""

    def __init__(self, job):
        self.job = job
        c = job.completion
        self.id = protocol.completion_id()
        self.pieces, self.entries = [[] for _ in range(c.choices)], [[] for _ in range(c.choices)]
        self.lengths = [0] * c.choices
        self.reasons, self.counts = [None] * c.choices, [0] * c.choices

    def take(self, event):
        """Record an event; its choice body for a stream (or None), or raise its error."""
        kind, *rest = event
        if kind == "error":
            raise rest[0]
        if kind == "text":
            i, text, entries = rest
            body = None
            if entries is not None:
                body = protocol.logprobs_body(entries, self.lengths[i])
                self.entries[i] += entries
            self.pieces[i].append(text)
            self.lengths[i] += len(text)
            return protocol.choice_body(i, text, None, body)
        i, reason, count = rest
        self.reasons[i], self.counts[i] = reason, count
        return protocol.choice_body(i, "", reason, None)

    @property
    def done(self):
        return all(r is not None for r in self.reasons)

    def usage(self):
        return protocol.usage_body(sum(len(ids) for _, ids in self.job.prompts),
                                   sum(self.counts))

    def response(self):
        c = self.job.completion
        choices = [protocol.choice_body(
            i, "".join(self.pieces[i]), self.reasons[i],
            None if c.logprobs is None else protocol.logprobs_body(self.entries[i], 0))
            for i in range(c.choices)]
        return protocol.envelope(self.id, c.model, choices, self.usage())


async def _events(engine, job):
    """The job's stream as server-sent events: a chunk per piece, each choice's end, the usage
    if asked for, then [DONE]. The events already queued when the client is written to go in
    one write (at most MAX_COALESCED), so a stream that fell behind catches up in fewer
    writes. A client that leaves cancels the job."""
    answer = _Answer(job)
    try:
        failed = False
        while not answer.done and not failed:
            # Let the loop run its other callbacks between writes, however many are queued: a
            # lost connection is noticed (and this job cancelled) after one more write, not
            # after a backlog of writes to a closed socket, each of them logged.
            await asyncio.sleep(0)
            events, chunks = [await job.queue.get()], []
            while len(events) < MAX_COALESCED and not job.queue.empty():
                events.append(job.queue.get_nowait())
            for event in events:
                try:
                    choice = answer.take(event)
                except ApiError as e:
                    chunks.append(f"data: {json.dumps(e.body())}\n\n")
                    failed = True
                    break
                chunks.append(_sse(protocol.envelope(answer.id, job.completion.model, [choice])))
            yield "".join(chunks)
        if answer.done and job.completion.include_usage:
            yield _sse(protocol.envelope(answer.id, job.completion.model, [], answer.usage()))
        yield "data: [DONE]\n\n"
    finally:
        if not answer.done:
            engine.cancel(job)


async def _collect(engine, job, request):
    """The job's whole response, once every choice has ended; a client that leaves first
    cancels it."""
    answer = _Answer(job)
    try:
        while not answer.done:
            try:
                event = await asyncio.wait_for(job.queue.get(), DISCONNECT_POLL_S)
            except asyncio.TimeoutError:
                if await request.is_disconnected():
                    break
                continue
            answer.take(event)
    finally:
        if not answer.done:
            engine.cancel(job)
    return JSONResponse(answer.response())


def _sse(body):
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"
