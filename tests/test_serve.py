"""charrnn serve against real clients on 127.0.0.1: the official openai client (streamed and
not) gets what `charrnn sample` writes with the same seed; httpx sends the bad requests, each
answered with a 4xx in OpenAI's error shape; the key, the queue, disconnects, and a bounded load
of concurrent clients. The SIGTERM shutdown runs `charrnn serve` in a process of its own."""
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from charrnn import Sampler
from serve_support import make_run, serving, wait_until

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "names")


@pytest.fixture(scope="module")
def sampler(run):
    return Sampler.load(str(run))


@pytest.fixture(scope="module")
def server(run):
    with serving([run], max_streams=8, max_queue=64, max_tokens=400, max_prompt=100) as (
            url, app):
        yield url, app


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0)


def post(url, body, **kwargs):
    return httpx.post(url + "/v1/completions", json=body, timeout=30, **kwargs)


def idle(app):
    """The engines hold no rows and nothing waits."""
    engines = app.state.service.engines.values()
    return all(e.load() == {"streams": 0, "waiting": 0} and len(e.batch) == 0 for e in engines)


# --- the openai client ----------------------------------------------------------------------
def test_the_openai_client_gets_what_sample_writes(client, sampler):
    r = client.completions.create(model="names", prompt="the c", max_tokens=80, seed=11,
                                  temperature=0.8, top_p=0.95, extra_body={"top_k": 12})
    want = sampler.sample(80, prime="the c", temperature=0.8, top_p=0.95, top_k=12, seed=11)
    assert r.object == "text_completion" and r.model == "names" and r.id.startswith("cmpl-")
    assert [c.text for c in r.choices] == [want] and r.choices[0].finish_reason == "length"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (5, 80,
                                                                                       85)


def test_the_openai_client_streams_the_same_text(client, sampler):
    chunks = list(client.completions.create(model="names", prompt="a", max_tokens=150, seed=4,
                                            temperature=1.1, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == sampler.sample(150, prime="a", temperature=1.1, seed=4)
    ends = [c.choices[0].finish_reason for c in chunks if c.choices and
            c.choices[0].finish_reason]
    assert ends == ["length"] and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 150
    assert len({c.id for c in chunks}) == 1


def test_n_choices_and_a_list_of_prompts_draw_as_seed_plus_i(client, sampler):
    r = client.completions.create(model="names", prompt=["ab", ""], n=2, max_tokens=40, seed=7,
                                  temperature=0.9)
    want = [sampler.sample(40, prime=p, temperature=0.9, seed=7 + i)
            for i, p in enumerate(["ab", "ab", "", ""])]
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    assert [c.text for c in r.choices] == want and len(set(want)) == 4
    assert r.usage.prompt_tokens == 2 and r.usage.completion_tokens == 160


def test_greedy_needs_no_seed(client, sampler):
    r = client.completions.create(model="names", prompt="x", max_tokens=30, temperature=0)
    assert r.choices[0].text == sampler.sample(30, prime="x", temperature=0)


def test_a_stop_text_ends_the_choice_and_is_left_out(client, sampler):
    whole = sampler.sample(300, prime="to", temperature=1.0, seed=2)
    stop = whole[100:103]
    cut = whole.find(stop)
    for stream in (False, True):
        r = client.completions.create(model="names", prompt="to", max_tokens=300, seed=2,
                                      stop=[stop, "\x00never"], stream=stream)
        parts = list(r) if stream else [r]
        text = "".join(c.choices[0].text for c in parts if c.choices)
        assert text == whole[:cut]
        assert [c.choices[0].finish_reason for c in parts if c.choices][-1] == "stop"


def test_echo_with_logprobs_and_no_tokens_scores_the_prompt(client, sampler):
    prompt = "the cat sat."
    r = client.completions.create(model="names", prompt=prompt, max_tokens=0, echo=True,
                                  logprobs=3)
    choice = r.choices[0]
    assert choice.text == prompt and choice.finish_reason == "length"
    lp = choice.logprobs
    assert "".join(lp.tokens) == prompt and lp.text_offset == list(range(len(prompt)))
    np.testing.assert_array_equal(lp.token_logprobs, sampler.log_prob(prompt)[1])
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        assert len(top) == 3 and max(top.values()) >= chosen
    assert r.usage.completion_tokens == 0 and r.usage.prompt_tokens == len(prompt)


def test_logprobs_of_drawn_characters(client, sampler):
    r = client.completions.create(model="names", prompt="ab", max_tokens=25, seed=9,
                                  logprobs=2, echo=True)
    choice = r.choices[0]
    assert choice.text == "ab" + sampler.sample(25, prime="ab", seed=9)
    lp = choice.logprobs
    assert "".join(lp.tokens) == choice.text and lp.text_offset == list(range(27))
    assert all(x <= 0 and len(t) == 2 for x, t in zip(lp.token_logprobs, lp.top_logprobs))


def test_models_and_health(server):
    url, _ = server
    models = httpx.get(url + "/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["names"]
    assert models["data"][0]["object"] == "model"
    health = httpx.get(url + "/health").json()
    assert health == {"status": "ok", "models": {"names": {"streams": 0, "waiting": 0}}}


def test_the_page_is_served(server):
    page = httpx.get(server[0] + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "v1/completions" in page.text and "<script" in page.text and "http" not in \
        page.text.split("<script")[1]  # no CDN: everything inline


def test_a_byte_model_reads_and_writes_utf8(tmp_path):
    from charrnn import CharRNN, ModelConfig, Vocab
    from charrnn.checkpoint import save_model
    from charrnn.kernels import packed

    model = CharRNN(ModelConfig(vocab_size=256, hidden_size=packed.NR, num_layers=2),
                    dtype=np.float32, seed=4)
    (tmp_path / "bytes").mkdir()
    save_model(tmp_path / "bytes" / "best.ckpt", model, Vocab([chr(i) for i in range(256)]),
               {"corpus": {"bytes": True}})
    sampler = Sampler.load(str(tmp_path / "bytes"))
    with serving([tmp_path / "bytes"]) as (url, _):
        body = {"model": "bytes", "prompt": "é", "max_tokens": 30, "seed": 5, "echo": True}
        answer = post(url, body).json()
        assert answer["choices"][0]["text"] == "é" + sampler.sample(30, prime="é", seed=5)
        assert answer["usage"]["prompt_tokens"] == 2  # bytes
        events, done = sse(post(url, {**body, "stream": True, "echo": False}).text.splitlines())
        assert done and "".join(c["text"] for e in events for c in e["choices"]) == \
            sampler.sample(30, prime="é", seed=5)


# --- bad requests: a 4xx in OpenAI's shape, naming the fix -----------------------------------
BAD = [
    (b"{not json", 400, None, "not valid JSON"),
    ([1, 2], 400, None, "JSON object"),
    ({"model": "names", "max_tokens": "5"}, 400, "max_tokens", "whole number"),
    ({"model": "names", "max_tokens": -1}, 400, "max_tokens", ">= 0"),
    ({"model": "names", "max_tokens": 10**9}, 400, "max_tokens", "--max-tokens"),
    ({"model": "names", "max_tokens": 2.5}, 400, "max_tokens", "whole number"),
    ({"model": "names", "temperature": "hot"}, 400, "temperature", "number"),
    ({"model": "names", "temperature": -0.5}, 400, "temperature", ">= 0"),
    ({"model": "names", "top_p": 0}, 400, "top_p", "top_p"),
    ({"model": "names", "top_k": 2.5}, 400, "top_k", "top_k"),
    ({"model": "names", "seed": -4}, 400, "seed", "seed"),
    ({"model": "names", "n": 0}, 400, "n", "n must be"),
    ({"model": "names", "n": 9}, 400, "n", "--max-streams"),
    ({"model": "names", "stream": "yes"}, 400, "stream", "true or false"),
    ({"model": "names", "echo": 1}, 400, "echo", "true or false"),
    ({"model": "names", "logprobs": 99}, 400, "logprobs", "0 to 20"),
    ({"model": "names", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "up to 4"),
    ({"model": "names", "stop": ""}, 400, "stop", "non-empty"),
    ({"model": "names", "prompt": 5}, 400, "prompt", "string"),
    ({"model": "names", "prompt": [1, 2, 3]}, 400, "prompt", "not token ids"),
    ({"model": "names", "prompt": "x" * 101}, 400, "prompt", "--max-prompt"),
    ({"model": "names", "prompt": "ABC"}, 400, "prompt", '"unknown": "skip"'),
    ({"model": "names", "unknown": "drop"}, 400, "unknown", '"error" or "skip"'),
    ({"model": "names", "stream_options": {"x": 1}}, 400, "stream_options", "include_usage"),
    ({"model": "names", "logit_bias": {"5": 1}}, 400, "logit_bias", "not supported"),
    ({"model": "names", "best_of": 3}, 400, "best_of", "not supported"),
    ({"model": "names", "colour": "red"}, 400, "colour", "unrecognized"),
    ({"prompt": "a"}, 400, "model", "GET /v1/models"),
    ({"model": "nope"}, 404, "model", "names"),
    ({"model": "../../../etc/passwd"}, 404, "model", "not served"),
    ({"model": "/tmp"}, 404, "model", "not served"),
]


@pytest.mark.parametrize("body,status,param,fix", BAD, ids=[str(b)[:40] for b, *_ in BAD])
def test_a_bad_request_gets_a_4xx_naming_the_fix(server, body, status, param, fix):
    url, app = server
    r = (httpx.post(url + "/v1/completions", content=body) if isinstance(body, bytes)
         else post(url, body))
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == param
    assert fix in error["message"] and "\n" not in error["message"]
    assert idle(app)


def test_unknown_characters_can_be_skipped(server, sampler):
    r = post(server[0], {"model": "names", "prompt": "aXbY", "unknown": "skip", "seed": 1,
                         "max_tokens": 20})
    assert r.status_code == 200
    assert r.json()["choices"][0]["text"] == sampler.sample(20, prime="ab", seed=1)


def test_wrong_routes_and_methods_answer_in_the_same_shape(server):
    for r, status in ((httpx.get(server[0] + "/v1/nothing"), 404),
                      (httpx.get(server[0] + "/v1/completions"), 405)):
        assert r.status_code == status and "message" in r.json()["error"]


# --- the key ----------------------------------------------------------------------------------
def test_an_api_key_guards_every_request_but_the_page(run):
    with serving([run], api_key="s3cret") as (url, _):
        body = {"model": "names", "max_tokens": 3}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            r = post(url, body, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(url + "/health").status_code == 401
        assert post(url, body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(url + "/").status_code == 200
        client = openai.OpenAI(base_url=url + "/v1", api_key="s3cret", max_retries=0)
        r = client.completions.create(model="names", prompt="", max_tokens=5)
        assert len(r.choices[0].text) == 5


# --- the queue, disconnects -------------------------------------------------------------------
def test_over_the_stream_cap_requests_wait_then_get_429(run):
    with serving([run], max_streams=2, max_queue=1, max_tokens=10**7) as (url, app):
        engine = app.state.service.engines["names"]
        long = {"model": "names", "max_tokens": 10**7, "stream": True}
        with httpx.Client(timeout=30) as c1, httpx.Client(timeout=30) as c2, \
                httpx.Client(timeout=30) as c3:
            with c1.stream("POST", url + "/v1/completions", json={**long, "n": 2}) as r1:
                lines = r1.iter_lines()  # kept: a dropped iterator closes the connection
                next(lines)
                with c2.stream("POST", url + "/v1/completions", json=long) as r2:
                    wait_until(lambda: engine.load() == {"streams": 2, "waiting": 1})
                    r = c3.post(url + "/v1/completions", json={"model": "names"})
                    assert r.status_code == 429, r.text
                    error = r.json()["error"]
                    assert "--max-streams 2" in error["message"] and error["code"] == \
                        "rate_limit_exceeded"
                    r1.close()  # leaves: the waiting request joins
                    wait_until(lambda: engine.load() == {"streams": 1, "waiting": 0})
                    assert r2.status_code == 200
                    assert c3.post(url + "/v1/completions",
                                   json={"model": "names", "max_tokens": 5}).status_code == 200
        wait_until(lambda: idle(app))


def test_a_client_that_leaves_mid_stream_frees_its_row(server):
    url, app = server
    with httpx.Client(timeout=30) as c:
        with c.stream("POST", url + "/v1/completions",
                      json={"model": "names", "max_tokens": 400, "stream": True}) as r:
            assert next(r.iter_lines()).startswith("data: ")
    wait_until(lambda: idle(app))


def test_a_failing_step_answers_500_and_the_engine_goes_on(run, monkeypatch):
    from charrnn.batching import Batch

    with serving([run]) as (url, app):
        step, failed = Batch.step, []

        def fails_once(self, T):
            if not failed:
                failed.append(T)
                raise RuntimeError("injected")
            return step(self, T)
        monkeypatch.setattr(Batch, "step", fails_once)
        r = post(url, {"model": "names", "max_tokens": 10})
        assert r.status_code == 500 and "injected" in r.json()["error"]["message"]
        assert post(url, {"model": "names", "max_tokens": 10}).status_code == 200
        wait_until(lambda: idle(app))


# --- load --------------------------------------------------------------------------------------
def sse(lines):
    """The JSON events of a stream, and whether it ended with [DONE] once, at its end."""
    data = [line[6:] for line in lines if line.startswith("data: ")]
    done = data.count("[DONE]") == 1 and data[-1:] == ["[DONE]"]
    return [json.loads(d) for d in data if d != "[DONE]"], done


def random_request(rng):
    body = {"model": "names", "prompt": "".join(rng.choices("abc de\n", k=rng.randrange(12))),
            "max_tokens": rng.choice([0, 1, 5, 40, 120]), "seed": rng.randrange(10**6),
            "temperature": rng.choice([0, 0.5, 1.0, 1.5]), "n": rng.choice([1, 1, 2])}
    if rng.random() < 0.4:
        body["top_k"] = rng.choice([1, 3, 20])
    if rng.random() < 0.3:
        body["top_p"] = rng.choice([0.5, 0.9])
    if rng.random() < 0.3:
        body["stop"] = rng.choice(["e", "\n", ["ab", "ba"]])
    if rng.random() < 0.2:
        body["logprobs"], body["echo"] = rng.choice([0, 2]), rng.random() < 0.5
    return body


async def one_client(http, rng, results):
    """Ten requests, one after another."""
    for _ in range(10):
        body, leave = random_request(rng), rng.random() < 0.15
        body["stream"] = leave or rng.random() < 0.6
        if rng.random() < 0.05:
            body["max_tokens"] = -1  # bad requests among the good
        if not body["stream"]:
            r = await http.post("/v1/completions", json=body)
            results.append((body, r.status_code, r.json(), None))
            continue
        async with http.stream("POST", "/v1/completions", json=body) as r:
            lines = []
            async for line in r.aiter_lines():
                lines.append(line)
                if leave and len(lines) >= 3:
                    break  # and leave, mid-stream
            results.append((body, r.status_code, None if r.status_code == 200 else
                            json.loads("".join(lines)), None if leave else lines))


def check_answer(body, status, answer, lines):
    if body["max_tokens"] < 0:
        assert status == 400 and answer["error"]["param"] == "max_tokens"
        return None
    assert status == 200
    choices = body.get("n", 1)
    if lines is not None:  # a whole stream: rebuild the choices from its chunks
        events, done = sse(lines)
        assert done and len({e["id"] for e in events}) == 1
        texts, ends = [""] * choices, [[] for _ in range(choices)]
        for event in events:
            for c in event["choices"]:
                texts[c["index"]] += c["text"]
                if c["finish_reason"]:
                    ends[c["index"]].append(c["finish_reason"])
        assert all(len(e) == 1 for e in ends)  # each choice ends exactly once
        return texts, [e[0] for e in ends]
    if answer is None:
        return None  # left mid-stream
    assert [c["index"] for c in answer["choices"]] == list(range(choices))
    return [c["text"] for c in answer["choices"]], [c["finish_reason"] for c in answer["choices"]]


def test_a_bounded_load_of_concurrent_clients(server, sampler):
    """30 clients, 10 requests each (random settings, some streamed, some leaving mid-stream,
    a few bad): every request gets a well-formed answer, each stream's choices end once, the
    texts are what `charrnn sample` writes, and afterwards the engine holds no rows."""
    url, app = server
    results = []

    async def main():
        limits = httpx.Limits(max_connections=64)  # one client: its TLS set-up made once
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
            await asyncio.gather(*(one_client(http, random.Random(i), results)
                                   for i in range(30)))
    asyncio.run(main())
    assert len(results) == 300
    checked = 0
    for body, status, answer, lines in results:
        got = check_answer(body, status, answer, lines)
        if got is None:
            continue
        texts, ends = got
        for i, (text, end) in enumerate(zip(texts, ends)):
            prime, n = body["prompt"], body["max_tokens"]
            want = sampler.sample(n, prime=prime, temperature=body["temperature"],
                                  top_k=body.get("top_k"), top_p=body.get("top_p"),
                                  seed=body["seed"] + i)
            stops = body.get("stop", [])
            stops = [stops] if isinstance(stops, str) else stops
            cuts = [want.find(s) for s in stops if s in want]
            want, want_end = (want[:min(cuts)], "stop") if cuts else (want, "length")
            assert text == (prime + want if body.get("echo") else want) and end == want_end
            checked += 1
    assert checked > 250
    wait_until(lambda: idle(app))


# --- shutdown ----------------------------------------------------------------------------------
def test_sigterm_lets_streams_end_then_exits_0(run):
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "serve", str(run), "--port", "0",
                             "--grace", "1", "--max-tokens", str(10**7)],
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        url = None
        for line in proc.stderr:
            if line.startswith("serving names at "):
                url = line.split()[3]
                break
        assert url and url.startswith("http://127.0.0.1:"), "no serving line"
        with httpx.Client(timeout=30) as c:
            with c.stream("POST", url + "/v1/completions",
                          json={"model": "names", "max_tokens": 10**7, "stream": True}) as r:
                lines = r.iter_lines()
                assert next(lines).startswith("data: ")
                sent = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                rest = list(lines)
                ended = time.monotonic() - sent
        events, done = sse(rest)
        assert done and events[-1]["choices"][0]["finish_reason"] == "length"
        assert 0.5 < ended < 10
        assert proc.wait(30) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_the_warning_for_a_network_address_without_a_key(monkeypatch):
    from types import SimpleNamespace

    from charrnn.config import ServeConfig
    from charrnn.serve import server

    assert server.loopback("127.0.0.1") and server.loopback("::1")
    assert server.loopback("localhost") and not server.loopback("0.0.0.0")
    app = SimpleNamespace(state=SimpleNamespace(service=SimpleNamespace(engines={})))
    monkeypatch.setattr(server, "create_app", lambda runs, limits, key: app)
    monkeypatch.setattr(server._Server, "run", lambda self: setattr(self, "started", True))
    said = []
    server.serve([], ServeConfig(host="0.0.0.0"), None, said.append)
    assert said == ["warning: listening on 0.0.0.0 without an API key: anyone who can reach "
                    "this machine can use the models; give --api-key (or CHARRNN_API_KEY)"]
    said.clear()
    server.serve([], ServeConfig(host="0.0.0.0"), "key", said.append)
    assert said == []


@pytest.mark.parametrize("args,message", [
    (["--port", "70000"], "port must be an integer from 0"),
    (["--max-streams", "0"], "max_streams must be a positive integer"),
    (["--max-queue", "-1"], "max_queue must be a whole number >= 0"),
    (["--grace", "-1"], "grace must be a finite number of seconds >= 0"),
])
def test_bad_limits_stop_serve_in_one_line(run, args, message):
    from click.testing import CliRunner

    from charrnn.cli import cli

    result = CliRunner().invoke(cli, ["serve", str(run), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in \
        result.output


def test_two_runs_of_one_name_are_refused(tmp_path):
    from charrnn.errors import UsageError
    from charrnn.serve.app import model_names

    a, b = make_run(tmp_path / "x" / "names"), make_run(tmp_path / "y" / "names")
    with pytest.raises(UsageError, match="two models would be named 'names'"):
        model_names([a, b])
    assert list(model_names([a, b / "best.ckpt"])) == ["names", "best"]


def test_the_serving_guides_client_block_runs(server, sampler):
    """docs/guides/serving.md's Python block, pointed at this server, prints what sample writes."""
    from test_docs import blocks

    source, = [src for lang, src, _, _ in blocks("docs/guides/serving.md") if lang == "python"]
    source = source.replace("http://127.0.0.1:8000", server[0])
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == sampler.sample(40, prime="mar", seed=1) + "\n"


def _stream_writes(events):
    """What app._events writes for one choice whose `events` are already queued (as for a
    client that fell behind), and whether it cancelled the job."""
    from types import SimpleNamespace

    from charrnn.serve import app

    cancelled = []
    completion = SimpleNamespace(choices=1, model="m", include_usage=False, logprobs=None)

    async def collect():
        queue = asyncio.Queue()
        for event in events:
            queue.put_nowait(event)
        job = SimpleNamespace(completion=completion, queue=queue, prompts=[("", [])])
        engine = SimpleNamespace(cancel=cancelled.append)
        return [write async for write in app._events(engine, job)]

    return asyncio.run(collect()), bool(cancelled)


def test_a_stream_that_fell_behind_catches_up_in_one_write():
    """The events queued when a stream is written to go out in one write, each still its own
    server-sent event, in order; an error among them is the last before [DONE]."""
    from charrnn.serve.protocol import ApiError

    pieces = [("text", 0, f"piece {k} ", None) for k in range(5)]
    writes, cancelled = _stream_writes([*pieces, ("end", 0, "length", 40)])
    assert len(writes) == 2 and writes[-1] == "data: [DONE]\n\n" and not cancelled
    events = [json.loads(e[len("data: "):]) for e in writes[0].split("\n\n") if e]
    assert [e["choices"][0]["text"] for e in events] == [f"piece {k} " for k in range(5)] + [""]
    assert [e["choices"][0]["finish_reason"] for e in events] == [None] * 5 + ["length"]

    failure = ("error", ApiError(500, "the model's engine failed", kind="server_error"))
    writes, cancelled = _stream_writes([pieces[0], failure, pieces[1]])
    events = [json.loads(e[len("data: "):]) for e in writes[0].split("\n\n") if e]
    assert events[0]["choices"][0]["text"] == "piece 0 "
    assert events[1]["error"]["message"] == "the model's engine failed" and len(events) == 2
    assert writes[1:] == ["data: [DONE]\n\n"] and cancelled
