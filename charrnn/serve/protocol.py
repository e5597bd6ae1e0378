"""OpenAI's completions protocol, as charrnn serve speaks it: a request's fields read and
checked into a Completion, the errors in OpenAI's shape, and the JSON of responses and
streamed chunks. A token is one of the model's characters (a byte model's: one byte), so
max_tokens, usage and logprobs count characters. No web framework here (charrnn.serve.app).

Extensions: top_k (an integer >= 1; 0, -1 or null: no cut) and unknown ("error", the
default, or "skip": what to do with prompt characters outside the vocabulary).
"""
import math
import time
import uuid
from dataclasses import dataclass
from typing import Optional

from ..errors import UsageError
from ..sampling import check_settings

MAX_STOPS = 4  # OpenAI's limit on stop texts
MAX_LOGPROBS = 20  # the most alternatives per character a request may ask for
DEFAULT_MAX_TOKENS = 16  # OpenAI's default


class ApiError(Exception):
    """A request that gets an error response: status, a one-line message that names the fix,
    and OpenAI's type, param and code."""

    def __init__(self, status, message, param=None, code=None, kind="invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = (status, message, param,
                                                                         code, kind)

    def body(self):
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code}}


# every field a request may carry: OpenAI's completions fields and the extensions above
SUPPORTED = ("model", "prompt", "max_tokens", "temperature", "top_p", "n", "stop", "seed",
             "stream", "stream_options", "logprobs", "echo", "top_k", "unknown", "user")
# OpenAI fields that change nothing at their neutral value, refused at any other
NEUTRAL = {"suffix": None, "best_of": 1, "presence_penalty": 0, "frequency_penalty": 0,
           "logit_bias": {}}


@dataclass(frozen=True)
class Completion:
    """A checked completions request. prompts: each prompt's text (before the vocabulary
    reads it); n choices per prompt, choice i = prompt i // n; seed: choice i draws as
    `charrnn sample --seed seed+i`."""

    model: str
    prompts: tuple
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 1.0
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    n: int = 1
    stop: tuple = ()
    seed: Optional[int] = None
    stream: bool = False
    include_usage: bool = False
    logprobs: Optional[int] = None
    echo: bool = False
    unknown: str = "error"

    @property
    def choices(self):
        return len(self.prompts) * self.n

    def seed_of(self, i):
        return None if self.seed is None else self.seed + i


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _bad(param, message):
    return ApiError(400, message, param=param)


def parse(body, limits):
    """The Completion that a decoded JSON body asks for, checked against `limits` (a
    ServeConfig); an ApiError (400) naming the first problem and its fix."""
    if not isinstance(body, dict):
        raise _bad(None, "the request body must be a JSON object of completions fields")
    unknown = sorted(set(body) - set(SUPPORTED) - set(NEUTRAL))
    if unknown:
        raise _bad(unknown[0], f"unrecognized request field {unknown[0]!r}; the fields are "
                               f"{', '.join(SUPPORTED)}")
    for name, neutral in NEUTRAL.items():
        if name in body and body[name] not in (neutral, None):
            raise _bad(name, f"{name} is not supported by charrnn serve; leave it out")
    get = body.get
    model = get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "model must be the name of a served model (GET /v1/models "
                            "lists them)")
    prompts = _prompts(get("prompt", ""))
    for i, prompt in enumerate(prompts):
        if len(prompt) > limits.max_prompt:
            raise _bad("prompt", f"prompt {i} has {len(prompt)} characters, over this "
                                 f"server's limit of {limits.max_prompt} (--max-prompt); "
                                 "send a shorter prompt")
    max_tokens = DEFAULT_MAX_TOKENS if get("max_tokens") is None else get("max_tokens")
    if not _is_int(max_tokens) or max_tokens < 0:
        raise _bad("max_tokens", f"max_tokens must be a whole number of characters >= 0, "
                                 f"got {max_tokens!r}")
    if max_tokens > limits.max_tokens:
        raise _bad("max_tokens", f"max_tokens {max_tokens} is over this server's limit of "
                                 f"{limits.max_tokens} (--max-tokens); ask for fewer")
    n = 1 if get("n") is None else get("n")
    if not _is_int(n) or n < 1:
        raise _bad("n", f"n must be an integer >= 1, got {n!r}")
    if len(prompts) * n > limits.max_streams:
        raise _bad("n", f"this request needs {len(prompts) * n} streams (prompts x n), over "
                        f"this server's {limits.max_streams} per model (--max-streams); "
                        "send fewer prompts or a smaller n")
    temperature = 1.0 if get("temperature") is None else get("temperature")
    top_p, top_k, seed = get("top_p"), get("top_k"), get("seed")
    if _is_int(top_k) and top_k in (0, -1):
        top_k = None  # the no-cut values other servers take
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if value is not None and not _is_number(value):
            raise _bad(name, f"{name} must be a number, got {value!r}")
    try:
        check_settings(0, temperature, top_k, top_p, seed)
    except UsageError as e:
        raise _bad(str(e).split()[0], str(e)) from None
    logprobs = get("logprobs")
    if logprobs is not None and (not _is_int(logprobs) or not 0 <= logprobs <= MAX_LOGPROBS):
        raise _bad("logprobs", f"logprobs must be null or an integer from 0 to "
                               f"{MAX_LOGPROBS}, got {logprobs!r}")
    flags = {}
    for name in ("stream", "echo"):
        flags[name] = False if get(name) is None else get(name)
        if not isinstance(flags[name], bool):
            raise _bad(name, f"{name} must be true or false, got {flags[name]!r}")
    options = get("stream_options")
    if options is not None and (not isinstance(options, dict) or set(options) - {
            "include_usage"} or not isinstance(options.get("include_usage", False), bool)):
        raise _bad("stream_options", 'stream_options must be {"include_usage": true or false}')
    unknown_policy = get("unknown") or "error"
    if unknown_policy not in ("error", "skip"):
        raise _bad("unknown", f'unknown must be "error" or "skip", got {unknown_policy!r}')
    if get("user") is not None and not isinstance(get("user"), str):
        raise _bad("user", "user must be a string")
    return Completion(model, prompts, max_tokens, float(temperature), top_p, top_k, n,
                      _stops(get("stop")), seed, flags["stream"],
                      bool((options or {}).get("include_usage")), logprobs, flags["echo"],
                      unknown_policy)


def _prompts(prompt):
    if isinstance(prompt, str):
        return (prompt,)
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return tuple(prompt)
    if isinstance(prompt, list) and prompt and all(_is_int(p) or isinstance(p, list)
                                                   for p in prompt):
        raise _bad("prompt", "prompt must be text: this server reads characters, not token "
                             "ids; send a string or a list of strings")
    raise _bad("prompt", "prompt must be a string or a non-empty list of strings")


def _stops(stop):
    stops = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if (not isinstance(stops, list) or len(stops) > MAX_STOPS
            or not all(isinstance(s, str) and s for s in stops)):
        raise _bad("stop", f"stop must be a non-empty string or a list of up to {MAX_STOPS} "
                           f"of them, got {stop!r}")
    return tuple(stops)


# --- responses ---------------------------------------------------------------------------------
def completion_id():
    return f"cmpl-{uuid.uuid4().hex[:24]}"


def logprobs_body(entries, offset):
    """OpenAI's logprobs object for entries [(char, log p, {char: log p} or None)], the first
    at text_offset `offset`."""
    return {"tokens": [e[0] for e in entries], "token_logprobs": [e[1] for e in entries],
            "top_logprobs": [e[2] for e in entries],
            "text_offset": list(range(offset, offset + len(entries)))}


def choice_body(index, text, finish_reason, logprobs):
    return {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish_reason}


def envelope(cid, model, choices, usage=None):
    """The response, or a chunk of a stream, around its choices."""
    body = {"id": cid, "object": "text_completion", "created": int(time.time()),
            "model": model, "choices": choices}
    if usage is not None:
        body["usage"] = usage
    return body


def usage_body(prompt_chars, completion_chars):
    return {"prompt_tokens": prompt_chars, "completion_tokens": completion_chars,
            "total_tokens": prompt_chars + completion_chars}
