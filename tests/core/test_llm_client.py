"""The shared chat client against the loopback OpenAI stand-in and a tiny local model."""

import json
import threading

import pytest

from tests.helpers.openai_stub import OpenAIStub, last_user_text, scripted

from infimed.core.config import ConfigError, config_from_dict
from infimed.core.endpoints import EndpointConfig, make_client
from infimed.core.llm_client import ChatResult, LocalChatClient, OpenAIChatClient, cache_key, image_part
from infimed.data.curation.config import JudgeConfig
from infimed.training.cot_synthesis import CoTTeacherConfig


def _req(text):
    return [{"role": "user", "content": text}]


def test_results_in_order_and_params_sent():
    with OpenAIStub(lambda r: "echo:" + last_user_text(r)) as stub:
        client = OpenAIChatClient(stub.base_url, "m", max_concurrency=4, temperature=0.0, max_tokens=8)
        results = client.complete([_req(f"q{i}") for i in range(12)], max_tokens=16)
    assert [r.text for r in results] == [f"echo:q{i}" for i in range(12)]
    assert all(r.ok and not r.cached for r in results)
    assert {r["max_tokens"] for r in stub.requests} == {16}  # call params override defaults
    assert {r["temperature"] for r in stub.requests} == {0.0}
    assert {r["model"] for r in stub.requests} == {"m"}


def test_one_failure_does_not_sink_the_batch():
    def responder(request):
        return 400 if last_user_text(request) == "bad" else "fine"

    with OpenAIStub(responder) as stub:
        client = OpenAIChatClient(stub.base_url, "m", max_retries=2)
        results = client.complete([_req("a"), _req("bad"), _req("b")])
    assert [r.ok for r in results] == [True, False, True]
    assert "HTTP 400" in results[1].error
    assert len(stub.requests) == 3  # a 400 is not retried


def test_bounded_retries_then_error_and_recovery():
    with OpenAIStub(scripted([503, 429, "third time"])) as stub:
        client = OpenAIChatClient(stub.base_url, "m", max_retries=2)
        client.backoff = 0.0
        [ok] = client.complete([_req("x")])
    assert ok.text == "third time" and len(stub.requests) == 3

    with OpenAIStub(lambda r: 503) as stub:
        client = OpenAIChatClient(stub.base_url, "m", max_retries=1)
        client.backoff = 0.0
        [failed] = client.complete([_req("x")])
    assert not failed.ok and "gave up after 2 attempts" in failed.error and len(stub.requests) == 2


def test_malformed_body_and_unreachable_server_are_errors():
    with OpenAIStub(lambda r: (200, {"choices": []})) as stub:
        [res] = OpenAIChatClient(stub.base_url, "m", max_retries=0).complete([_req("x")])
    assert res.error and "malformed" in res.error
    with OpenAIStub(lambda r: "x") as stub:
        url = stub.base_url
    client = OpenAIChatClient(url, "m", max_retries=0, timeout=2)  # server is shut down now
    [res] = client.complete([_req("x")])
    assert res.error and "connection error" in res.error


def test_disk_cache_by_content_hash(tmp_path):
    with OpenAIStub(lambda r: "A" + last_user_text(r)) as stub:
        client = OpenAIChatClient(stub.base_url, "m", cache_dir=tmp_path, temperature=0.0)
        first = client.complete([_req("x"), _req("y")])
        second = client.complete([_req("x"), _req("y"), _req("z")])
        other_params = client.complete([_req("x")], temperature=0.7)
    assert [r.cached for r in first] == [False, False]
    assert [r.cached for r in second] == [True, True, False]
    assert [r.text for r in second] == ["Ax", "Ay", "Az"]
    assert other_params[0].cached is False
    assert len(stub.requests) == 4
    assert cache_key("m", _req("x"), {"a": 1, "b": 2}) == cache_key("m", _req("x"), {"b": 2, "a": 1})
    assert cache_key("m", _req("x"), {}) != cache_key("m2", _req("x"), {})


def test_failures_are_not_cached(tmp_path):
    with OpenAIStub(scripted([400, "later"])) as stub:
        client = OpenAIChatClient(stub.base_url, "m", cache_dir=tmp_path, max_retries=0)
        assert not client.complete([_req("x")])[0].ok
        assert client.complete([_req("x")])[0].text == "later"


def test_api_key_header_and_identity(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sekret")
    with OpenAIStub(lambda r: "ok") as stub:
        client = OpenAIChatClient(stub.base_url, "judge-model", api_key_env="MY_KEY")
        client.complete([_req("x")])
    assert stub.headers[0].get("Authorization") == "Bearer sekret"
    ident = client.identity()
    assert ident["kind"] == "openai" and ident["model"] == "judge-model" and ident["base_url"] == stub.base_url


def test_concurrency_is_bounded():
    in_flight, peak, lock = [0], [0], threading.Lock()
    gate = threading.Event()

    def responder(request):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        gate.wait(0.05)
        with lock:
            in_flight[0] -= 1
        return "ok"

    with OpenAIStub(responder) as stub:
        client = OpenAIChatClient(stub.base_url, "m", max_concurrency=3)
        assert all(r.ok for r in client.complete([_req(str(i)) for i in range(12)]))
    assert 1 < peak[0] <= 3


def test_image_part_is_data_url():
    from PIL import Image

    part = image_part(Image.new("RGB", (4, 4), "red"))
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/png;base64,")
    with OpenAIStub(lambda r: json.dumps(r["messages"][0]["content"][0]["type"])) as stub:
        client = OpenAIChatClient(stub.base_url, "m")
        [res] = client.complete([[{"role": "user", "content": [part, {"type": "text", "text": "hi"}]}]])
    assert res.text == '"image_url"'


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="base_url"):
        OpenAIChatClient("localhost:8000", "m")
    with pytest.raises(TypeError, match="requests"):
        OpenAIChatClient("http://x/v1", "m").complete("hello")


def test_local_client_with_tiny_model(tmp_path):
    testing = pytest.importorskip("infimed.testing")
    from PIL import Image

    model, processor = testing.tiny_model(), testing.tiny_processor()
    client = LocalChatClient((model, processor), max_new_tokens=4, cache_dir=tmp_path)
    img = image_part(Image.new("RGB", (64, 64), "white"))
    requests = [
        [{"role": "user", "content": [img, {"type": "text", "text": "Is this blank?"}]}],
        [{"role": "user", "content": "text only"}],
    ]
    results = client.complete(requests)
    assert len(results) == 2 and all(isinstance(r, ChatResult) for r in results)
    assert all(r.ok for r in results), [r.error for r in results]
    again = client.complete(requests)
    assert [r.text for r in again] == [r.text for r in results] and all(r.cached for r in again)
    assert client.identity()["kind"] == "local"


def test_cache_key_of_inline_images():
    from PIL import Image

    red, blue = Image.new("RGB", (4, 4), "red"), Image.new("RGB", (4, 4), "blue")
    msg = lambda img: [{"role": "user", "content": [{"type": "image", "image": img}]}]  # noqa: E731
    assert cache_key("m", msg(red), {}) == cache_key("m", msg(red.copy()), {})
    assert cache_key("m", msg(red), {}) != cache_key("m", msg(blue), {})
    assert cache_key("m", msg(b"\x00"), {}) != cache_key("m", msg(b"\x01"), {})


def test_endpoint_config_and_factory(tmp_path):
    config = config_from_dict(EndpointConfig, {"base_url": "http://x/v1", "model": "m", "temperature": 0}, "judge")
    client = make_client(config, cache_dir=tmp_path)
    assert isinstance(client, OpenAIChatClient) and client.cache.root == tmp_path
    assert client.identity()["params"] == {"temperature": 0.0}  # an unset max_tokens is not sent
    # roles differ only in defaults: a greedy curation judge, a sampling CoT teacher
    assert (JudgeConfig().temperature, JudgeConfig().max_tokens) == (0.0, 128)
    teacher = CoTTeacherConfig(kind="local", model="m")
    assert (teacher.temperature, teacher.max_tokens, teacher.timeout, teacher.trust_remote_code) == (0.7, 1024, 120.0,
                                                                                                     False)
    with pytest.raises(ValueError, match="`judge.base_url` is required"):
        EndpointConfig(model="m").check("judge")
    with pytest.raises(ConfigError, match="judge.kind: expected one of 'openai', 'local', got 'vllm'"):
        config_from_dict(EndpointConfig, {"kind": "vllm"}, "judge")
