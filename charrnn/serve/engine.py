"""One model's engine loop: a thread that owns the continuous batch (charrnn.batching) of every
live stream of that model. Between compiled steps it drops the streams whose clients left,
reads in the requests waiting (their prompts fed in one batched pass) as far as --max-streams
allows, draws the next characters for every row, and hands each stream its piece on the event
loop that asked (one call_soon_threadsafe per step). A stream leaves at once when it ends: on a
stop text, at max_tokens, or, after drain(), at the deadline. The compiled steps release the
GIL, so the event loop serves HTTP meanwhile. No web framework here (charrnn.serve.app).

A step draws T characters for every row, T chosen so that a step takes about STEP_S: a client
gets its text in pieces of T characters, and a new request waits at most a step to join.
"""
import itertools
import logging
import threading
import time
from collections import deque

import numpy as np

from ..batching import Batch, Row
from ..bytemodel import decoder, model_chars
from ..errors import UsageError
from .protocol import ApiError

STEP_S = 0.01  # seconds a step aims at
MAX_STEP_CHARS = 64  # characters per row and step, at most
log = logging.getLogger("charrnn.serve")


class Job:
    """One request's choices, in the engine's hands: their prompts (the model's characters and
    ids) and the queue on the submitting event loop that gets their events:
    ("text", choice, text, logprob entries or None), ("end", choice, finish_reason, characters)
    and ("error", ApiError)."""

    def __init__(self, completion, prompts, queue, loop):
        self.completion, self.prompts, self.queue, self.loop = completion, prompts, queue, loop
        self.rows = completion.choices if completion.max_tokens > 0 else 0  # rows it takes


class Stream:
    """Where one choice stands: what it has drawn and not yet sent, and its end. Text that
    could begin a stop text is held back until it is known not to (OpenAI's rule: a stop text
    ends the choice and is not part of it), so the unsent text stays short however long the
    stream."""

    def __init__(self, job, index, engine):
        c = job.completion
        self.job, self.index, self.engine, self.logprobs = job, index, engine, c.logprobs
        self.stops = [model_chars(s, engine.sampler.bytes) for s in c.stop]
        self.hold = max(map(len, self.stops), default=1) - 1
        self.left, self.unsent, self.sent = c.max_tokens, "", 0  # sent: characters, in all
        self.searched = 0  # how much of the unsent text has been searched for stop texts
        V = engine.sampler.model.config.vocab_size
        self.ids, self.logp = np.zeros(0, np.int64), np.zeros((0, V))  # the unsent's
        self.decoder = engine.decoder(job.prompts[index // c.n][0])

    def take(self, chars, ids, logp):
        """The row's next characters (the model's), their ids (T,) and log softmax (T, V) or
        None: the piece to send (text, logprob entries) and the finish reason or None."""
        chars = chars[: self.left]
        self.left -= len(chars)
        self.unsent += chars
        if self.logprobs is not None:
            k = len(chars)
            self.ids = np.concatenate([self.ids, ids[:k]])
            self.logp = np.concatenate([self.logp, logp[:k]])
        start = max(self.searched - self.hold, 0)
        found = [i for i in (self.unsent.find(s, start) for s in self.stops) if i >= 0]
        self.searched = len(self.unsent)
        if found:
            return self._send(min(found), "stop")
        if self.left == 0:
            return self._send(len(self.unsent), "length")
        return self._send(max(len(self.unsent) - self.hold, 0), None)

    def end(self):
        """The piece that ends the choice now, with finish_reason "length"."""
        return self._send(len(self.unsent), "length")

    def _send(self, k, reason):
        """Send the first k unsent characters."""
        piece, self.unsent, entries = self.unsent[:k], self.unsent[k:], None
        self.searched, self.sent = max(self.searched - k, 0), self.sent + k
        if self.logprobs is not None:
            entries = self.engine.entries(self.ids[:k], self.logp[:k], self.logprobs)
            self.ids, self.logp = self.ids[k:], self.logp[k:]
        return self.decoder(piece, reason is not None), entries, reason


class Events:
    """The events of one engine turn, handed to each event loop in one call."""

    def __init__(self):
        self.by_loop = {}

    def add(self, job, event):
        self.by_loop.setdefault(job.loop, []).append((job.queue, event))

    def send(self):
        for loop, items in self.by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # that event loop has closed: nobody is listening
                pass


def _deliver(items):
    for queue, event in items:
        queue.put_nowait(event)


class Engine:
    """The engine of one served model (a CPU Sampler), limits from a ServeConfig. submit(),
    cancel(), drain() and close() are called from the event loop; everything else runs in
    the engine's thread."""

    def __init__(self, name, sampler, limits):
        self.name, self.sampler, self.limits = name, sampler, limits
        self.batch = Batch(sampler)
        self.batch.warm()  # before the first request: a compile would hold up every stream
        self._cv = threading.Condition()
        self._waiting, self._waiting_rows, self._live_rows = deque(), 0, 0
        self._cancelled = set()
        self._deadline, self._closing = None, False
        self._streams = {}  # the batch's key -> Stream
        self._keys = itertools.count()
        self._rate = None  # row-characters per second, as measured: sets a step's T
        self._thread = threading.Thread(target=self._loop, name=f"charrnn-serve-{name}",
                                        daemon=True)
        self._thread.start()

    # --- from the event loop ---------------------------------------------------------------
    def encode(self, prompt, unknown):
        """(the model's characters, ids) of a prompt: a 400 ApiError for characters outside
        the vocabulary under unknown="error"."""
        try:
            chars = model_chars(prompt, self.sampler.bytes)
        except UsageError as e:
            raise ApiError(400, str(e), param="prompt") from None
        missing = self.sampler.vocab.unknown_chars(chars)
        if missing and unknown == "error":
            shown = ", ".join(map(repr, list(missing)[:10]))
            raise ApiError(400, f"the prompt has {sum(missing.values())} characters that model "
                                f"{self.name!r} never saw: {shown}; remove them, or send "
                                '"unknown": "skip" to drop them', param="prompt")
        ids = self.sampler.vocab.encode(chars, unknown="skip").astype(np.int64)
        return self.sampler.vocab.decode(ids), ids

    def submit(self, job):
        """Queue a job to join the batch: a 503 ApiError once draining, 429 when the rows
        live and waiting would pass --max-streams plus --max-queue."""
        with self._cv:
            if self._deadline is not None or self._closing:
                raise ApiError(503, "the server is shutting down and takes no new requests; "
                                    "retry against a server that is up", code="shutting_down",
                               kind="server_error")
            taken = self._live_rows + self._waiting_rows
            if taken + job.rows > self.limits.max_streams + self.limits.max_queue:
                raise ApiError(429, f"model {self.name!r} is busy: {self._live_rows} streams "
                                    f"running and {self._waiting_rows} waiting, as many as "
                                    f"it takes (--max-streams {self.limits.max_streams}, "
                                    f"--max-queue {self.limits.max_queue}); retry later",
                               code="rate_limit_exceeded", kind="rate_limit_error")
            self._waiting.append(job)
            self._waiting_rows += job.rows
            self._cv.notify()

    def cancel(self, job):
        """The job's client has gone: its rows leave before the next step."""
        with self._cv:
            self._cancelled.add(job)
            self._cv.notify()

    def drain(self, grace):
        """Take no new jobs; the live and waiting ones end within `grace` seconds, those
        still going then with finish_reason "length"."""
        with self._cv:
            if self._deadline is None:
                self._deadline = time.monotonic() + grace
            self._cv.notify()

    def close(self):
        """End every job now (finish_reason "length") and stop the thread."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join()

    def load(self):
        """{"streams": live rows, "waiting": rows waiting to join}."""
        with self._cv:
            return {"streams": self._live_rows, "waiting": self._waiting_rows}

    # --- helpers the streams use -------------------------------------------------------------
    def decoder(self, prompt_chars):
        """decode(piece, final) -> the text of a stream's pieces of model characters: as they
        are, or a byte model's UTF-8, decoded across pieces (after the prompt's bytes)."""
        if not self.sampler.bytes:
            return lambda piece, final: piece
        return decoder(prompt_chars)

    def entries(self, ids, logp, k):
        """OpenAI's logprob entries for characters ids (T,) drawn or read under logp (T, V):
        (character, log p, its k most likely alternatives {character: log p})."""
        chars = self.sampler.vocab.chars
        found = []
        for i, row in zip(ids.tolist(), logp):
            best = np.argsort(-row, kind="stable")[:k]
            found.append((chars[i], float(row[i]), {chars[j]: float(row[j]) for j in best}))
        return found

    # --- the engine's thread -----------------------------------------------------------------
    def _loop(self):
        while True:
            with self._cv:
                while not (self._waiting or self._streams or self._cancelled or self._closing):
                    self._cv.wait()
                cancelled, self._cancelled = self._cancelled, set()
                gone = [j for j in self._waiting if j in cancelled]
                for job in gone:
                    self._waiting.remove(job)
                    self._waiting_rows -= job.rows
                free = self.limits.max_streams - sum(
                    1 for s in self._streams.values() if s.job not in cancelled)
                joining = []
                while self._waiting and self._waiting[0].rows <= free:
                    joining.append(self._waiting.popleft())
                    self._waiting_rows -= joining[-1].rows
                    self._live_rows += joining[-1].rows  # live from now, for submit()
                    free -= joining[-1].rows
                due = self._closing or (self._deadline is not None
                                        and time.monotonic() >= self._deadline)
                if due:  # the waiting end too
                    joining += self._waiting
                    self._waiting.clear()
                    self._waiting_rows = 0
                closing = self._closing
            events = Events()
            try:
                self._leave([s for s in self._streams.values() if s.job in cancelled])
                self._admit(joining, events)
                if due:
                    self._end_all(events)
                elif self._streams:
                    self._step(events)
            except Exception as e:  # a bug, not a request's fault: end what is live, go on
                log.exception("the engine of %s failed a step", self.name)
                events = Events()  # what the turn had made is void
                self._fail_all(events, e, joining)
            events.send()
            with self._cv:
                self._live_rows = len(self._streams)
            if closing and not self._streams:
                return

    def _admit(self, jobs, events):
        """Read the jobs in: echoed prompts (scored in one batched pass when logprobs are
        asked for), then every row's prompt in one batched pass; a job of max_tokens 0 ends
        here."""
        scored = [job for job in jobs if job.completion.echo
                  and job.completion.logprobs is not None]
        scores = iter(self.batch.score([ids for job in scored for _, ids in job.prompts]))
        logps = {(id(job), p): next(scores) for job in scored for p in range(len(job.prompts))}
        rows, streams = [], []
        for job in jobs:
            c = job.completion
            for i in range(c.choices):
                prompt, ids = job.prompts[i // c.n]
                if c.echo:
                    logp = logps.get((id(job), i // c.n))
                    entries = None if logp is None else self.entries(ids, logp, c.logprobs)
                    events.add(job, ("text", i, self.decoder("")(prompt, True), entries))
                if c.max_tokens == 0:
                    events.add(job, ("end", i, "length", 0))
                    continue
                key = next(self._keys)
                rows.append(Row(key, ids, c.temperature, c.top_k, c.top_p, c.seed_of(i),
                                c.logprobs is not None))
                streams.append((key, Stream(job, i, self)))
        self.batch.join(rows)  # settings protocol.parse has checked
        self._streams.update(streams)

    def _step(self, events):
        B = len(self.batch)
        most = max(s.left for s in self._streams.values())
        T = 1 if self._rate is None else round(STEP_S * self._rate / B)
        T = int(min(max(T, 1), MAX_STEP_CHARS, most))
        t0 = time.perf_counter()
        out, logp = self.batch.step(T)  # (B, T)
        rate = B * T / max(time.perf_counter() - t0, 1e-9)
        self._rate = rate if self._rate is None else 0.8 * self._rate + 0.2 * rate
        text = self.sampler.vocab.decode(out.ravel())  # all rows' characters at once
        done = []
        for b, key in enumerate(self.batch.keys):
            stream = self._streams[key]
            piece, entries, reason = stream.take(text[b * T: (b + 1) * T], out[b],
                                                 None if logp is None else logp[b])
            self._emit(events, stream, piece, entries, reason, done)
        self._leave(done)

    def _end_all(self, events):
        done = []
        for stream in self._streams.values():
            self._emit(events, stream, *stream.end(), done)
        self._leave(done)

    def _emit(self, events, stream, piece, entries, reason, done):
        if piece or entries:
            events.add(stream.job, ("text", stream.index, piece, entries))
        if reason is not None:
            events.add(stream.job, ("end", stream.index, reason, stream.sent))
            done.append(stream)

    def _leave(self, streams):
        streams = set(streams)
        keys = [k for k, s in self._streams.items() if s in streams]
        self.batch.leave(keys)
        for key in keys:
            del self._streams[key]

    def _fail_all(self, events, error, joining):
        """Every job in the engine's hands gets a 500, and the batch starts empty."""
        error = ApiError(500, f"the model's engine failed ({type(error).__name__}: {error}); "
                              "this is a bug in charrnn: please report it", kind="server_error")
        jobs = [s.job for s in self._streams.values()] + list(joining)
        for job in {id(job): job for job in jobs}.values():
            events.add(job, ("error", error))
        self.batch = Batch(self.sampler)
        self._streams.clear()

