"""`annorm serve`: every endpoint with FastAPI's test client, every bad input the issue lists,
the queue, and the command itself (address, temp folder removed on exit, missing extra)."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("multipart")


@pytest.fixture(scope="module")
def app():
    from annorm_cli.server.app import create_app
    return create_app("cpu")


@pytest.fixture(scope="module")
def client(app):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                # starlette's notice about its httpx client
        from fastapi.testclient import TestClient
    return TestClient(app)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


PHOTO = np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8)
MASK = np.zeros((96, 128), np.uint8)
MASK[30:60, 40:90] = 255


def _one_sentence(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail.endswith((".", "?")) and "\n" not in detail and "Traceback" not in detail
    for word in words:
        assert word in detail
    return detail


def test_models_lists_the_registry(client):
    rows = {row["name"]: row for row in client.get("/api/models").json()}
    assert rows["scenes-inpaint-an"]["task"] == "inpaint"
    assert "cat" in rows["cifar10-an"]["classes"]


def test_inpaint_keeps_known_pixels_and_changes_the_hole(client):
    response = client.post("/api/inpaint", files={"image": ("p.png", _png(PHOTO)), "mask": ("m.png", _png(MASK))},
                           data={"seed": "3"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = _decode(response.content)
    filled, hole = np.asarray(image), MASK > 0
    assert filled.shape == PHOTO.shape
    assert np.array_equal(filled[~hole], PHOTO[~hole])
    assert np.abs(filled[hole].astype(int) - PHOTO[hole]).mean() > 5
    assert image.text["annorm:model"] == "scenes-inpaint-an" and len(image.text["annorm:sha256"]) == 64
    again = client.post("/api/inpaint", files={"image": ("p.png", _png(PHOTO)), "mask": ("m.png", _png(MASK))},
                        data={"seed": "3"})
    assert again.content == response.content                      # the same seed: the same bits


def test_inpaint_equals_the_python_api(client):
    import annorm_cli
    response = client.post("/api/inpaint", files={"image": ("p.png", _png(PHOTO)), "mask": ("m.png", _png(MASK))})
    assert np.array_equal(np.asarray(_decode(response.content)), annorm_cli.inpaint(PHOTO, MASK > 0))


@pytest.mark.parametrize("image, mask, words", [
    (b"not an image", _png(MASK), ("not a readable image",)),
    (b"", _png(MASK), ("empty",)),
    (_png(PHOTO), _png(np.zeros((50, 50), np.uint8)), ("another aspect ratio",)),
    (_png(PHOTO), _png(np.zeros((96, 128), np.uint8)), ("marks no pixel",)),
    (_png(PHOTO), _png(PHOTO)[:100], ("not a readable image",)),                 # a truncated file
])
def test_inpaint_bad_files_get_one_sentence(client, image, mask, words):
    response = client.post("/api/inpaint", files={"image": ("p.png", image), "mask": ("m.png", mask)})
    _one_sentence(response, 400, *words)


def test_inpaint_bad_fields(client):
    files = {"image": ("p.png", _png(PHOTO)), "mask": ("m.png", _png(MASK))}
    _one_sentence(client.post("/api/inpaint", files=files, data={"model": "cifar10-an"}), 400, "task")
    _one_sentence(client.post("/api/inpaint", files=files, data={"model": "nope"}), 400, "Unknown model")
    _one_sentence(client.post("/api/inpaint", files=files, data={"seed": "-1"}), 422, "seed")
    _one_sentence(client.post("/api/inpaint", files={"image": ("p.png", _png(PHOTO))}), 422, "mask")


def test_pixel_limit_refuses_decompression_bombs(client, monkeypatch):
    from annorm_cli import images
    monkeypatch.setattr(images, "MAX_PIXELS", 5000)
    response = client.post("/api/inpaint", files={"image": ("p.png", _png(PHOTO)), "mask": ("m.png", _png(MASK))})
    _one_sentence(response, 400, "million pixels")


def test_upload_size_limit(client):
    big = b"\0" * (32 * 2 ** 20 + 1)
    response = client.post("/api/inpaint", files={"image": ("p.png", big), "mask": ("m.png", _png(MASK))})
    _one_sentence(response, 413, "limit")
    assert client.get("/api/models").status_code == 200            # still serving


def test_mask_endpoint_reads_like_the_cli(client):
    from annorm_cli.images import read_mask
    small = np.zeros((48, 64), np.uint8)
    small[10:20, 5:30] = 255
    response = client.post("/api/mask", files={"mask": ("m.png", _png(small))}, data={"width": "128", "height": "96"})
    rgba = np.asarray(_decode(response.content))
    assert rgba.shape == (96, 128, 4)
    assert np.array_equal(rgba[..., 3] == 255, read_mask(_png(small), (96, 128)))
    _one_sentence(client.post("/api/mask", files={"mask": ("m.png", _png(small))}, data={"width": "50", "height": "50"}),
                  400, "aspect ratio")


def test_generate_samples_carry_the_cli_parameters(client, tmp_path):
    import base64

    from annorm_cli.cli.app import app as cli_app
    from annorm_cli.cli.errors import run_guarded
    response = client.post("/api/generate", json={"classes": ["cat"], "seed": 4, "count": 2, "truncation": 0.8})
    samples = response.json()["samples"]
    assert [(s["class"], s["seed"]) for s in samples] == [("cat", 4), ("cat", 5)]
    assert _decode(base64.b64decode(samples[1]["png"])).text["annorm:seed"] == "5"
    one = client.post("/api/generate", json={"classes": ["cat"], "seed": 5, "count": 1, "truncation": 0.8})
    data = base64.b64decode(one.json()["samples"][0]["png"])       # a batch of one, as --from-png makes it
    image = _decode(data)
    assert image.text["annorm:seed"] == "5" and image.text["annorm:truncation"] == "0.8"
    (tmp_path / "sample.png").write_bytes(data)                   # the CLI reproduces the page's sample
    assert run_guarded(cli_app, ["generate", "--from-png", str(tmp_path / "sample.png"), "--out", str(tmp_path / "again"),
                                 "-q"]) == 0
    again = np.asarray(Image.open(tmp_path / "again" / "cat-seed0005.png"))
    assert np.array_equal(again, np.asarray(image))


def test_generate_bad_requests(client):
    _one_sentence(client.post("/api/generate", json={"classes": ["kat"]}), 400, "Unknown class")
    _one_sentence(client.post("/api/generate", json={"count": 0}), 422, "count")
    for truncation in (-1, 0, 1e-9, 5):
        _one_sentence(client.post("/api/generate", json={"truncation": truncation}), 400, "from 0.1 to 4")
    infinite = client.post("/api/generate", content=b'{"truncation": Infinity}', headers={"content-type": "application/json"})
    _one_sentence(infinite, 400, "from 0.1 to 4", "got inf")
    _one_sentence(client.post("/api/generate", json={"seed": 2 ** 63 - 2, "count": 3}), 400, "The last seed")
    long = _one_sentence(client.post("/api/generate", json={"classes": ["x" * 5_000_000]}), 400, "Unknown class")
    assert len(long) <= 300
    _one_sentence(client.post("/api/generate", json={"classes": ["all"], "count": 64}), 400, "at most")
    _one_sentence(client.post("/api/generate", content=b"{", headers={"content-type": "application/json"}), 422)


def test_layouts_for_a_sample_and_a_photo(client):
    sample = client.post("/api/layouts", data={"class_name": "cat", "seed": "2"}).json()
    layer = sample["layers"][0]
    assert sample["width"] == 256 and len(layer["argmax"]) == 16 and layer["entities"]
    assert abs(sum(e["share"] for e in layer["entities"]) - 1) < 0.2
    photo = client.post("/api/layouts", files={"image": ("p.png", _png(PHOTO)), "mask": ("m.png", _png(MASK))}).json()
    assert photo["width"] == 128 and len(photo["layers"]) >= 1
    _one_sentence(client.post("/api/layouts", files={"image": ("p.png", _png(PHOTO))}), 400, "mask")
    _one_sentence(client.post("/api/layouts", data={}), 400, "class_name")
    for truncation in ("inf", "1e999", "nan", "0.01"):
        _one_sentence(client.post("/api/layouts", data={"class_name": "cat", "truncation": truncation}), 400,
                      "from 0.1 to 4")


def test_pages_and_docs_are_served(client):
    assert "annorm" in client.get("/").text
    assert "openapi.json" in client.get("/docs").text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/models", "/api/inpaint", "/api/generate", "/api/layouts", "/api/mask"} <= set(paths)
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/../app.py").status_code == 404     # no path outside the static folder


def test_a_full_queue_gets_503_and_the_server_recovers(app, client):
    from annorm_cli.server.app import MAX_WAITING
    slots = app.state.gate.slots
    for _ in range(MAX_WAITING + 1):
        slots.acquire()
    try:
        _one_sentence(client.post("/api/generate", json={"count": 1}), 503, "busy")
    finally:
        for _ in range(MAX_WAITING + 1):
            slots.release()
    assert client.post("/api/generate", json={"count": 1}).status_code == 200


def test_a_flood_gets_200_or_503_never_a_crash(client):
    statuses, failures = [], []

    def ask():
        try:                                          # a server exception raises here: record it, not lose it
            statuses.append(client.post("/api/layouts", data={"class_name": "cat", "seed": "1"}).status_code)
        except Exception as exc:                      # noqa: BLE001
            failures.append(repr(exc))
    threads = [threading.Thread(target=ask) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures and len(statuses) == 12            # every request answered
    assert set(statuses) <= {200, 503} and 200 in statuses


def test_serve_command_binds_localhost_and_removes_its_temp_folder(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "-m", "annorm_cli", "serve", "--port", "0", "--device", "cpu"],
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stderr.readline()
        assert line.startswith("annorm serve: http://127.0.0.1:") and "beyond this machine" not in line
        import urllib.request
        address = line.split()[2]
        with urllib.request.urlopen(address, timeout=10) as page:
            assert b"annorm" in page.read()
        assert any(p.name.startswith("annorm-serve-") for p in tmp_path.iterdir())
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(20)
    assert not any(p.name.startswith("annorm-serve-") for p in tmp_path.iterdir())


def test_serve_without_the_extra_names_it(monkeypatch, capsys):
    import importlib.util

    from annorm_cli.cli.app import app as cli_app
    from annorm_cli.cli.errors import run_guarded
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    assert run_guarded(cli_app, ["serve"]) == 2
    assert "pip install 'annorm[serve]'" in capsys.readouterr().err


def test_serve_help_does_not_import_the_server_or_numpy():
    result = subprocess.run([sys.executable, "-c", "import sys; from annorm_cli.cli.app import app;"
                             "from annorm_cli.cli.errors import run_guarded; run_guarded(app, ['serve', '--help']);"
                             "print('fastapi' in sys.modules, 'torch' in sys.modules, 'numpy' in sys.modules)"],
                            capture_output=True, text=True)
    assert result.stdout.strip().endswith("False False False"), result.stdout + result.stderr


def test_the_mask_endpoint_bounds_the_size_it_is_asked_for(client):
    response = client.post("/api/mask", files={"mask": ("m.png", _png(MASK))}, data={"width": "10000", "height": "10000"})
    _one_sentence(response, 413, "above the limit")
    _one_sentence(client.post("/api/mask", files={"mask": ("m.png", _png(MASK))},
                              data={"width": "100000", "height": "100000"}), 413, "above the limit")


@pytest.fixture(scope="module")
def local_client():
    from annorm_cli.server.app import create_app, local_hosts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(create_app("cpu", hosts=local_hosts("127.0.0.1", 8000)), base_url="http://127.0.0.1:8000")


def test_a_local_server_answers_only_to_its_own_address(local_client):
    assert local_client.get("/api/models").status_code == 200
    assert local_client.get("/api/models", headers={"host": "localhost:8000"}).status_code == 200
    for host in ("evil.example:8000", "127.0.0.1:9999", "attacker.test"):        # DNS rebinding names its own host
        _one_sentence(local_client.get("/api/models", headers={"host": host}), 421, "address it listens on")
        _one_sentence(local_client.post("/api/generate", json={"count": 1}, headers={"host": host}), 421)


def test_cross_origin_requests_that_change_state_are_refused(local_client):
    form = {"class_name": "cat", "seed": "1"}
    for headers in ({"origin": "http://evil.example"}, {"origin": "null"}, {"sec-fetch-site": "cross-site"},
                    {"origin": "http://127.0.0.1:9999"}):
        _one_sentence(local_client.post("/api/layouts", data=form, headers=headers), 403, "another site")
    same = {"origin": "http://127.0.0.1:8000", "sec-fetch-site": "same-origin"}
    assert local_client.post("/api/layouts", data=form, headers=same).status_code == 200
    assert local_client.post("/api/layouts", data=form).status_code == 200        # no Origin: curl, scripts
    assert local_client.get("/", headers={"origin": "http://evil.example"}).status_code == 200   # reading the page


def test_local_hosts_are_the_loopback_names_with_the_port():
    from annorm_cli.server.app import local_hosts
    assert local_hosts("127.0.0.1", 8000) == {"127.0.0.1:8000", "localhost:8000"}
    assert local_hosts("::1", 80) == {"[::1]:80", "localhost:80", "[::1]", "localhost"}
    assert local_hosts("0.0.0.0", 8000) is None


def _http_response(sock) -> bytes:
    """One whole response (head + Content-Length bytes of body) from a keep-alive socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(4096)
    return head


def test_a_connection_stuck_mid_header_is_closed(monkeypatch):
    import socket

    import uvicorn

    from annorm_cli.server.app import create_app
    from annorm_cli.server.timeouts import HeaderTimeoutProtocol

    class Quick(HeaderTimeoutProtocol):
        header_timeout = 0.5
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app("cpu"), log_level="warning", http=Quick))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        stuck = socket.create_connection(("127.0.0.1", port))
        stuck.sendall(b"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        stuck.settimeout(10)
        assert stuck.recv(100) == b""                         # closed by the server, not answered
        whole = socket.create_connection(("127.0.0.1", port))
        whole.settimeout(10)
        for pause in (0.0, 1.0):                                # a finished request's connection is not cut by it
            time.sleep(pause)
            whole.sendall(b"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert _http_response(whole).startswith(b"HTTP/1.1 200")
    finally:
        server.should_exit = True
        thread.join(10)
