"""``textlstm serve``: the JSON API, its limits, micro-batching, and a real server on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from textlstm.cli import app as cli
from textlstm.predict.predictor import Predictor
from textlstm.serve.app import Limits, create_app
from textlstm.serve.batcher import Batcher

TEXTS = ["a great and wonderful film", "terrible, boring and bad", "", "good"]


@pytest.fixture(scope="module")
def predictor(trained_run):
    return Predictor.load(trained_run, device="cpu")


@pytest.fixture
def client(predictor):
    limits = Limits(max_body_bytes=2048, max_texts=8, max_chars=500)
    with TestClient(create_app(predictor, limits, {"model": "tiny"})) as test_client:
        yield test_client


def test_predict_gives_the_libraries_predictions(client, predictor):
    expected = predictor.predict(TEXTS)
    many = client.post("/predict", json={"texts": TEXTS})
    one = client.post("/predict", json={"text": TEXTS[0], "top_k": 1})
    assert many.status_code == 200 and one.status_code == 200
    got = many.json()["predictions"]
    assert [p["label"] for p in got] == [p.label for p in expected]
    assert [p["score"] for p in got] == pytest.approx([p.score for p in expected], abs=1e-6)
    assert one.json()["predictions"][0]["label"] == expected[0].label
    assert len(one.json()["predictions"][0]["scores"]) == 1
    assert client.get("/health").json() == {"status": "ok"}
    meta = client.get("/metadata").json()
    assert meta["labels"] == predictor.labels and meta["model"] == "tiny"
    assert meta["limits"]["max_texts"] == 8 and meta["batches"]["texts"] == len(TEXTS) + 1


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"texts": ["x"] * 9}, 413, "texts: 9 texts in one request; the limit is 8"),
        ({"text": "x" * 501}, 413, "texts[0]: 501 characters; the limit is 500 per text"),
        ({"texts": ["x" * 300] * 8}, 413, "the limit is 2,048"),
        ({"text": "a", "texts": ["b"]}, 422, 'give "text" (one string) or "texts"'),
        ({"txt": "a"}, 422, "txt: Extra inputs are not permitted"),
        ({"texts": []}, 422, "texts: give at least one text"),
        ({"texts": [1]}, 422, "texts.0: Input should be a valid string"),
        ({"text": "a", "top_k": 0}, 422, "top_k: Input should be greater than or equal to 1"),
    ],
)
def test_limits_and_mistakes_are_one_json_error(client, body, status, message):
    response = client.post("/predict", json=body)
    assert response.status_code == status
    assert message in response.json()["error"], response.json()


def test_a_body_that_is_not_json(client):
    response = client.post("/predict", content=b"{not json", headers={"content-type": "text"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]


class Counting:
    """A model whose probabilities name the text they belong to; counts forward passes."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, texts):
        self.calls.append(len(texts))
        return np.array([[float(text), 1.0] for text in texts])


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_requests_share_forward_passes(batching):
    model = Counting()

    async def main():
        batcher = Batcher(model, max_texts=64, max_wait=2.0, batching=batching)
        await batcher.start()
        requests = [[str(i), str(i + 0.5)] for i in range(16)]
        results = await asyncio.gather(*(batcher.submit(texts) for texts in requests))
        await batcher.stop()
        return requests, results

    requests, results = asyncio.run(main())
    for texts, rows in zip(requests, results):  # each request gets its own rows back
        assert rows[:, 0].tolist() == [float(t) for t in texts]
    assert sum(model.calls) == 32
    assert model.calls == ([32] if batching else [2] * 16)


def test_a_batch_stops_growing_at_max_texts():
    model = Counting()

    async def main():
        batcher = Batcher(model, max_texts=8, max_wait=2.0)
        await batcher.start()
        await asyncio.gather(*(batcher.submit([str(i)]) for i in range(20)))
        await batcher.stop()

    asyncio.run(main())
    assert model.calls == [8, 8, 4]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_real_server_on_loopback(predictor):
    import uvicorn

    port = free_port()
    config = uvicorn.Config(create_app(predictor), host="127.0.0.1", port=port, log_level="error")
    server = uvicorn.Server(config)
    ready, startup = threading.Event(), server.startup

    async def started(sockets=None):  # the server says when it listens: no polling
        await startup(sockets=sockets)
        ready.set()

    server.startup = started
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert ready.wait(timeout=120) and server.started  # the bound only limits a failure
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            assert http.get("/health").json() == {"status": "ok"}
            got = http.post("/predict", json={"texts": TEXTS}).json()["predictions"]
        assert [p["label"] for p in got] == [p.label for p in predictor.predict(TEXTS)]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_the_command_binds_to_loopback_and_says_so(trained_run, monkeypatch):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda api, **kwargs: seen.update(kwargs))
    result = CliRunner().invoke(cli, ["serve", str(trained_run), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8000
    assert "loopback only" in result.output
    wide = CliRunner().invoke(cli, ["serve", str(trained_run), "--host", "0.0.0.0"])
    assert wide.exit_code == 0 and "reachable from other machines" in wide.output
    missing = CliRunner().invoke(cli, ["serve", str(trained_run / "nope")])
    assert missing.exit_code == 2 and len(missing.output.strip().splitlines()) == 1


def test_a_lone_request_does_not_wait_for_company():
    model = Counting()

    async def main():
        batcher = Batcher(model, max_texts=64, max_wait=600.0)  # a wait would outlast the test
        await batcher.start()
        for i in range(3):
            await asyncio.wait_for(batcher.submit([str(i)]), timeout=60)
        await batcher.stop()

    asyncio.run(main())
    assert model.calls == [1, 1, 1]
