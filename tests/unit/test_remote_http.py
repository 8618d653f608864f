"""The remote engines' HTTP client, stream formats and error messages, against loopback
stand-ins (tests/remote_standin.py); the real engines are in tests/e2e/test_remote_*.py."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from lsp_server.backends.base import Cancelled, CancelToken, GenerationRequest, TimeBudget
from lsp_server.backends.remote import apis, http
from lsp_server.backends.remote.backend import plain_http_warning
from lsp_server.backends.remote.http import HttpOptions, RemoteError
from lsp_server.backends.remote.settings import remote_config
from lsp_server.backends.stops import check_stops
from lsp_server.config import Settings
from lsp_server.evaluation.llama_peer import free_port
from tests.remote_standin import StandIn, ndjson, sse


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param([b"data: {}\n", b"\n"], ["{}"], id="one-event"),
        pytest.param([b"data: a\r\n", b"data: b\r\n", b"\r\n"], ["a\nb"], id="multi-line-crlf"),
        pytest.param([b": keep-alive\n", b"\n", b"data:x\n", b"\n"], ["x"], id="comment-no-space"),
        pytest.param([b"event: x\n", b"data: [DONE]"], ["[DONE]"], id="no-final-blank"),
    ],
)
def test_sse_data(lines: list[bytes], expected: list[str]) -> None:
    assert list(apis.sse_data(lines)) == expected


def test_llama_server_stream_reads_text_tokens_and_timings() -> None:
    lines = b"".join(
        sse(
            [
                {"content": "x = ", "tokens": [5, 6], "stop": False, "timings": {"prompt_n": 3, "cache_n": 40}},
                {"content": "", "tokens": [], "stop": True, "stop_type": "limit", "tokens_predicted": 2,
                 "tokens_evaluated": 43, "timings": {"prompt_n": 3, "cache_n": 40, "prompt_ms": 9.0, "predicted_ms": 4.0}},
            ]
        )
    ).split(b"\n")  # fmt: skip
    pieces = list(apis.llama_server_pieces(lines, "engine"))
    assert [p.text for p in pieces] == ["x = ", ""]
    assert pieces[0].tokens == (5, 6) and (pieces[0].evaluated, pieces[0].reused) == (3, 40)
    assert pieces[-1].done and pieces[-1].finish == "length" and pieces[-1].prompt_tokens == 43


def test_openai_stream_needs_done_and_reads_usage() -> None:
    events = [
        {"choices": [{"text": "ab", "finish_reason": None}]},
        {"choices": [{"text": "c", "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 2,
                                  "prompt_tokens_details": {"cached_tokens": 8}}},
    ]  # fmt: skip
    pieces = list(apis.openai_pieces(b"".join(sse([*events, b"[DONE]"])).split(b"\n"), "e"))
    assert "".join(p.text for p in pieces) == "abc"
    assert (pieces[-2].reused, pieces[-2].evaluated) == (8, 2)
    assert pieces[-1].done and pieces[-1].finish == "length"
    with pytest.raises(RemoteError, match="without \\[DONE\\]") as caught:
        list(apis.openai_pieces(b"".join(sse(events)).split(b"\n"), "e"))
    assert caught.value.kind == "dropped"


def test_stream_error_event_is_a_clear_error() -> None:
    with pytest.raises(RemoteError, match="stopped the answer with an error: boom"):
        list(apis.ollama_pieces([b'{"error": "boom"}\n'], "ollama"))


def test_check_stops_order_strings_then_rule_then_time() -> None:
    request = GenerationRequest(
        prompt="",
        stop=("\ndef",),
        stop_rule=lambda text: text.find("!") if "!" in text else None,
        time_budget=TimeBudget(1.0, lambda text: len(text)),
    )
    assert check_stops("a!b\ndef", request, started=0.0, now=0.5) == (3, "stop")
    assert check_stops("a!b", request, started=0.0, now=0.5) == (1, "rule")
    assert check_stops("ab", request, started=0.0, now=0.5) == (None, "")
    assert check_stops("ab", request, started=0.0, now=2.0) == (2, "time")


@pytest.fixture
def stand_in_factory():  # type: ignore[no-untyped-def]
    made: list[StandIn] = []

    def make(*args, **kwargs) -> StandIn:  # type: ignore[no-untyped-def]
        made.append(StandIn(*args, **kwargs))
        return made[-1]

    yield make
    for stand_in in made:
        stand_in.close()


def test_connection_refused_says_so() -> None:
    with pytest.raises(RemoteError, match="connection refused") as caught:
        http.request("GET", f"http://127.0.0.1:{free_port()}/health", HttpOptions(timeout_s=2))
    assert caught.value.kind == "refused"


def test_no_answer_is_a_timeout() -> None:
    with socket.socket() as listener:  # accepts (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/props"
        started = time.monotonic()
        with pytest.raises(RemoteError, match="no answer within 0.3 s") as caught:
            http.request("GET", url, HttpOptions(timeout_s=0.3))
    assert caught.value.kind == "timeout" and time.monotonic() - started < 3


def test_401_names_the_variable_never_the_key(stand_in_factory) -> None:  # type: ignore[no-untyped-def]
    engine = stand_in_factory(
        lambda *_: (401, "application/json", [b'{"error": {"message": "Invalid API Key"}}'])
    )
    options = HttpOptions(api_key="s3cret-key", api_key_source="TEAM_LLM_KEY")
    with pytest.raises(RemoteError) as caught:
        http.request("POST", engine.url + "/completion", options, body={})
    assert caught.value.kind == "auth" and caught.value.status == 401
    assert "TEAM_LLM_KEY was rejected" in str(caught.value) and "Invalid API Key" in str(
        caught.value
    )
    assert "s3cret" not in str(caught.value) and "s3cret" not in repr(options)
    assert engine.seen[0].headers["authorization"] == "Bearer s3cret-key"


def test_404_points_at_the_model(stand_in_factory) -> None:  # type: ignore[no-untyped-def]
    engine = stand_in_factory(
        lambda *_: (404, "application/json", [b'{"error": "model \'x\' not found"}'])
    )
    with pytest.raises(
        RemoteError, match="unknown model or endpoint.*model 'x' not found"
    ) as caught:
        http.request("POST", engine.url + "/api/generate", HttpOptions(), body={})
    assert caught.value.kind == "not-found"


def test_https_to_a_plain_http_engine_is_a_tls_failure(stand_in_factory) -> None:  # type: ignore[no-untyped-def]
    engine = stand_in_factory(lambda *_: (200, "application/json", [b"{}"]))
    with pytest.raises(RemoteError, match="TLS") as caught:
        http.request("GET", engine.url.replace("http:", "https:") + "/", HttpOptions(timeout_s=2))
    assert caught.value.kind == "tls"


def test_dropped_stream_says_so(stand_in_factory) -> None:  # type: ignore[no-untyped-def]
    events = sse([{"content": "a", "stop": False}])
    engine = stand_in_factory(lambda *_: (200, "text/event-stream", events))
    with http.request("POST", engine.url + "/completion", HttpOptions(), body={}) as response:
        with pytest.raises(RemoteError, match="ended before its last event") as caught:
            list(apis.llama_server_pieces(response.lines(), "llama-server"))
    assert caught.value.kind == "dropped"


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_body_framings(stand_in_factory, chunked: bool) -> None:  # type: ignore[no-untyped-def]
    engine = stand_in_factory(
        lambda *_: (200, "application/x-ndjson", ndjson([{"a": 1}, {"b": 2}])), chunked=chunked
    )
    with http.request("GET", engine.url + "/x", HttpOptions()) as response:
        assert list(response.lines()) == [b'{"a": 1}', b'{"b": 2}']


def test_cancel_closes_the_stream_so_the_engine_stops(stand_in_factory) -> None:  # type: ignore[no-untyped-def]
    events = sse([{"content": str(i), "stop": False} for i in range(200)])
    engine = stand_in_factory(lambda *_: (200, "text/event-stream", events), delay_s=0.02)
    cancel = CancelToken()
    threading.Timer(0.3, cancel.cancel, args=("superseded",)).start()
    received = 0
    with pytest.raises(Cancelled):
        with http.request(
            "POST", engine.url + "/completion", HttpOptions(), body={}, cancel=cancel
        ) as response:
            for _ in response.lines():
                received += 1
    assert engine.seen[0].done.wait(5)
    assert engine.seen[0].closed_early and engine.seen[0].sent < 100


@pytest.mark.parametrize(
    ("url", "environ", "expected"),
    [
        pytest.param(
            "http://gpu.example.com:8080",
            {"HTTP_PROXY": "http://proxy:3128"},
            "http://proxy:3128",
            id="http",
        ),
        pytest.param(
            "https://gpu.example.com", {"https_proxy": "http://p:1"}, "http://p:1", id="https-lower"
        ),
        pytest.param(
            "https://gpu.example.com", {"HTTP_PROXY": "http://p:1"}, None, id="scheme-mismatch"
        ),
        pytest.param(
            "http://gpu.corp.lan",
            {"HTTP_PROXY": "http://p:1", "NO_PROXY": ".corp.lan"},
            None,
            id="no-proxy",
        ),
        pytest.param("http://127.0.0.1:8080", {"HTTP_PROXY": "http://p:1"}, None, id="loopback"),
        pytest.param("http://localhost:8080", {"ALL_PROXY": "http://p:1"}, None, id="localhost"),
    ],
)
def test_proxy_from_environment(url: str, environ: dict[str, str], expected: str | None) -> None:
    import urllib.parse

    assert http.proxy_for(urllib.parse.urlsplit(url), environ) == expected


@pytest.mark.parametrize(
    ("endpoint", "warns"),
    [
        pytest.param("http://10.0.0.5:8080", True, id="lan-http"),
        pytest.param("https://10.0.0.5:8080", False, id="lan-https"),
        pytest.param("http://127.0.0.1:8080", False, id="loopback"),
        pytest.param("http://[::1]:8080", False, id="loopback-v6"),
        pytest.param("http://localhost:11434", False, id="localhost"),
    ],
)
def test_plain_http_warning(endpoint: str, warns: bool) -> None:
    assert (plain_http_warning(endpoint) is not None) == warns


def test_remote_config_reads_the_key_from_the_named_variable() -> None:
    settings = Settings(backend="llama-server", endpoint="https://gpu:8080", api_key_env="TEAM_KEY",
                        request_timeout_ms=1500, tls_verify=False)  # fmt: skip
    config = remote_config(settings, {"TEAM_KEY": "k-123"})
    assert (
        config.http.api_key == "k-123" and config.http.timeout_s == 1.5 and not config.http.verify
    )
    assert "k-123" not in repr(config)
    with pytest.raises(Exception, match="TEAM_KEY, which is not set"):
        remote_config(settings, {})
    with pytest.raises(Exception, match="needs endpoint"):
        remote_config(Settings(backend="openai"), {})


def test_remote_settings_merge_and_reload() -> None:
    from lsp_server.config import merge, needs_reload

    merged, problems = merge(
        Settings(), {"backend": "ollama", "endpoint": "http://h:11434", "apiKeyEnv": ""}
    )
    assert (merged.backend, merged.endpoint, merged.api_key_env, problems) == (
        "ollama",
        "http://h:11434",
        "",
        [],
    )
    assert needs_reload(Settings(), merged)
    bad, problems = merge(Settings(), {"backend": "vllm-magic"})
    assert (
        bad.backend == "local"
        and "expected one of local, llama-server, openai, ollama" in problems[0]
    )


def test_load_model_says_where_code_goes_and_fails_clearly_without_fallback() -> None:
    from lsp_server.backends.worker import ModelWorker
    from lsp_server.runtime import load_model

    worker = ModelWorker()
    states: list[tuple[str, str]] = []
    worker.add_listener(lambda state, message: states.append((state, message)))
    settings = Settings(
        backend="llama-server", endpoint="http://192.0.2.1:9", request_timeout_ms=200
    )
    try:
        with pytest.raises(Exception, match="cannot reach llama-server at http://192.0.2.1:9"):
            load_model(worker, settings).result(30)
        assert states[0][0] == "loading" and "leaves this machine unencrypted" in states[0][1]
        assert states[-1][0] == "error" and worker.info is None  # no silent local model
    finally:
        worker.shutdown()


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):  # type: ignore[no-untyped-def]
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no self-signed certificate to test TLS with")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)  # fmt: skip
    return cert, key


def test_self_signed_engine_needs_its_ca_or_verify_off(self_signed, stand_in_factory) -> None:  # type: ignore[no-untyped-def]
    import ssl

    cert, key = self_signed
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    engine = stand_in_factory(
        lambda *_: (200, "application/json", [b'{"ok": true}']), tls=server_tls
    )
    assert engine.url.startswith("https://")
    with pytest.raises(RemoteError, match="not trusted.*set tlsCaBundle") as caught:
        http.request("GET", engine.url + "/props", HttpOptions(timeout_s=5))
    assert caught.value.kind == "tls"
    with http.request(
        "GET", engine.url + "/props", HttpOptions(timeout_s=5, ca_bundle=str(cert))
    ) as response:
        assert response.json() == {"ok": True}
    with http.request(
        "GET", engine.url + "/props", HttpOptions(timeout_s=5, verify=False)
    ) as response:
        assert response.json() == {"ok": True}
    with pytest.raises(RemoteError, match="cannot read the CA bundle"):
        http.request("GET", engine.url + "/props", HttpOptions(ca_bundle=str(cert) + ".missing"))


def test_client_certificate_is_presented(self_signed, stand_in_factory) -> None:  # type: ignore[no-untyped-def]
    import ssl

    cert, key = self_signed
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    server_tls.verify_mode = ssl.CERT_REQUIRED
    server_tls.load_verify_locations(cert)
    engine = stand_in_factory(lambda *_: (200, "application/json", [b"{}"]), tls=server_tls)
    options = HttpOptions(
        timeout_s=5, ca_bundle=str(cert), client_cert=str(cert), client_key=str(key)
    )
    with http.request("GET", engine.url + "/props", options) as response:
        assert response.status == 200
    with pytest.raises(RemoteError) as caught:
        http.request("GET", engine.url + "/props", HttpOptions(timeout_s=5, ca_bundle=str(cert)))
    assert caught.value.kind in ("tls", "dropped"), caught.value


def test_a_reused_connection_closed_by_the_engine_is_retried_once_on_a_fresh_one() -> None:
    """The engine closes an idle keep-alive connection just as a request goes out on it
    (no byte of an answer): the request is sent again, once, on a new connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    served: list[int] = []  # requests answered, per connection index

    def read_request(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return b""
            data += chunk
        return data

    def serve() -> None:
        for index in range(2):
            conn, _ = listener.accept()
            with conn:
                while read_request(conn):
                    if index == 0 and served.count(0) == 1:
                        conn.shutdown(socket.SHUT_RDWR)  # "idle timeout": closed unanswered
                        break
                    served.append(index)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 2\r\n\r\n{}")  # fmt: skip

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    pool = http.Pool()
    url = f"http://127.0.0.1:{port}/props"
    with http.request("GET", url, HttpOptions(timeout_s=5), pool=pool) as response:
        assert response.json() == {}
    # The pool's liveness check cannot see a close that has not happened yet: skip it.
    original = http._still_open
    http._still_open = lambda sock: True  # type: ignore[assignment]
    try:
        with http.request("GET", url, HttpOptions(timeout_s=5), pool=pool) as response:
            assert response.json() == {}
    finally:
        http._still_open = original  # type: ignore[assignment]
        pool.close()
        listener.close()
    assert served == [0, 1] and pool.reused == 1 and pool.opened == 2


def test_an_answer_with_connection_close_is_not_pooled(stand_in_factory) -> None:  # type: ignore[no-untyped-def]
    engine = stand_in_factory(lambda *_: (200, "application/json", [b"{}"]))  # Connection: close
    pool = http.Pool()
    for _ in range(2):
        with http.request("GET", engine.url + "/a", HttpOptions(), pool=pool) as response:
            assert response.json() == {} and not response.reusable
    assert pool.reused == 0 and pool.opened == 2


def test_an_idle_connection_closed_by_the_engine_is_dropped_before_use() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            # closed at once: the pooled connection is dead before the next request

    threading.Thread(target=serve, daemon=True).start()
    pool = http.Pool()
    url = f"http://127.0.0.1:{port}/props"
    try:
        for _ in range(2):
            with http.request("GET", url, HttpOptions(timeout_s=5), pool=pool) as response:
                assert response.json() == {}
            time.sleep(0.1)
    finally:
        pool.close()
        listener.close()
    assert pool.reused == 0 and pool.opened == 2
