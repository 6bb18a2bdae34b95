"""fetch_weights (pooch) against a real HTTP server on 127.0.0.1: full SHA-256 and prefix checks,
cut-off, HTTP errors, cache; the records hold the published hashes."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import threading

import pytest
import torch

from ofa_explore.errors import OFAError
from ofa_explore.weights import (
    WEIGHTS,
    PublishedWeights,
    WeightsHashMismatch,
    WeightsUnavailableError,
    fetch_weights,
)


@pytest.fixture
def server():
    """Serves ``files`` (name -> bytes); names in ``cut`` send half the bytes they announce."""
    files: dict[str, bytes] = {}
    cut: set[str] = set()
    requests: list[tuple[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, body: bool) -> None:
            requests.append((self.command, self.path))
            name = self.path.lstrip("/")
            if name not in files:
                self.send_error(404)
                return
            data = files[name]
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data[: len(data) // 2] if name in cut else data)
            self.close_connection = True

        def do_GET(self):
            self._answer(body=True)

        def do_HEAD(self):
            self._answer(body=False)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.files, httpd.cut, httpd.requests = files, cut, requests
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("OFA_EXPLORE_CACHE", str(folder))
    return folder


def _entry(server, filename: str, **hashes) -> PublishedWeights:
    return PublishedWeights(
        "dofa-test",
        "dofa_v1",
        filename,
        f"{server.url}/{filename}",
        "CC-BY-4.0",
        "-",
        "test entry",
        768,
        **hashes,
    )


def _state_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"cls_token": torch.zeros(1, 1, 768), "w": torch.arange(5000.0)}, buffer)
    return buffer.getvalue()


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_records_hold_the_full_published_sha256_or_say_why_not():
    """Full digests (and sizes) from the LFS pointers of the pinned TorchGeo revisions; the
    TorchGeo file names carry their first 8 hex digits."""
    full = {n: w for n, w in WEIGHTS.items() if w.sha256}
    assert set(full) == {"dofa-base-v1", "dofa-large-v1", "dofa-large-v1-legacy"}
    for entry in WEIGHTS.values():
        assert entry.hash_source
        named = re.search(r"-([0-9a-f]{8})\.pth$", entry.filename)
        if named:  # a TorchGeo name: the record's hash agrees with it
            assert entry.expected_sha256.startswith(named.group(1))
        if entry.sha256:
            assert len(entry.sha256) == 64 and entry.size > 0 and "/resolve/" in entry.url
    assert WEIGHTS["dofa-base-v1-legacy"].expected_sha256 == "7cc0f413"  # only the prefix known
    assert WEIGHTS["dofa-base-v2"].expected_sha256 is None
    with pytest.raises(ValueError, match="64 lowercase hex"):
        PublishedWeights("x", "dofa_v1", "x.pth", None, "-", "-", "-", 768, sha256="a0275954")


def test_good_file_is_downloaded_checked_and_cached(server, cache):
    data = _state_bytes()
    name = "dofa_test.pth"
    server.files[name] = data
    entry = _entry(server, name, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    path = fetch_weights(entry, progress=False)
    assert path == cache / name and path.read_bytes() == data
    assert _leftovers(cache) == [name]  # no temp file next to it
    assert torch.load(path, weights_only=True)["w"].shape == (5000,)
    seen = len(server.requests)
    assert seen >= 1
    assert fetch_weights(entry, progress=False) == path
    assert len(server.requests) == seen  # the cached file is used, the server is not asked


def test_file_without_hash_in_its_name_downloads_unchecked(server, cache):
    server.files["plain.pth"] = b"x" * 3000
    assert fetch_weights(_entry(server, "plain.pth"), progress=False).read_bytes() == b"x" * 3000


def test_wrong_full_hash_is_refused_and_nothing_kept(server, cache):
    """The full SHA-256 is compared: a file agreeing in its first 63 hex digits is refused."""
    data = b"not the published file" * 100
    digest = hashlib.sha256(data).hexdigest()
    almost = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    server.files["dofa_test.pth"] = data
    with pytest.raises(WeightsHashMismatch) as err:
        fetch_weights(_entry(server, "dofa_test.pth", sha256=almost), progress=False)
    message = str(err.value)
    assert f"SHA-256 is {digest}, not the published {almost}" in message
    assert "nothing was kept" in message and "path=" in message and "ofa convert" in message
    assert isinstance(err.value, WeightsUnavailableError) and isinstance(err.value, OFAError)
    assert _leftovers(cache) == []


def test_where_only_a_prefix_is_known_it_is_checked(server, cache):
    data = b"not the published file" * 100
    server.files["dofa_test-a0275954.pth"] = data
    with pytest.raises(WeightsHashMismatch) as err:
        fetch_weights(
            _entry(server, "dofa_test-a0275954.pth", sha256_prefix="a0275954"), progress=False
        )
    message = str(err.value)
    assert "SHA-256 does not start with a0275954" in message
    assert f"it starts with {hashlib.sha256(data).hexdigest()[:8]}" in message
    assert _leftovers(cache) == []
    good = hashlib.sha256(data).hexdigest()[:8]
    assert (
        fetch_weights(
            _entry(server, "dofa_test-a0275954.pth", sha256_prefix=good), progress=False
        ).read_bytes()
        == data
    )


@pytest.mark.parametrize("hashed", [False, True])
def test_cut_off_download_is_refused_and_nothing_kept(server, cache, hashed):
    data = _state_bytes()
    server.files["cut.pth"] = data
    server.cut.add("cut.pth")
    hashes = {"sha256": hashlib.sha256(data).hexdigest()} if hashed else {}
    with pytest.raises(WeightsUnavailableError) as err:
        fetch_weights(_entry(server, "cut.pth", **hashes), progress=False)
    message = str(err.value)
    assert "path=" in message
    assert f"cut off before the end of the file ({len(data)} bytes announced)" in message
    assert _leftovers(cache) == []


def test_http_error_names_the_status_and_keeps_nothing(server, cache):
    with pytest.raises(WeightsUnavailableError) as err:
        fetch_weights(_entry(server, "missing-a0275954.pth"), progress=False)
    assert "HTTP 404" in str(err.value) and "ofa convert" in str(err.value)
    assert _leftovers(cache) == []


def test_unreachable_server_is_named_and_nothing_kept(cache):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    entry = PublishedWeights(
        "dofa-test",
        "dofa_v1",
        "x.pth",
        f"http://127.0.0.1:{port}/x.pth",
        "CC-BY-4.0",
        "-",
        "test entry",
        768,
    )
    with pytest.raises(WeightsUnavailableError, match="could not be reached"):
        fetch_weights(entry, progress=False)
    assert _leftovers(cache) == []


def test_progress_goes_to_stderr_only_when_asked(server, cache, capsys):
    data = _state_bytes()
    server.files["quiet.pth"] = data
    server.files["loud.pth"] = data
    fetch_weights(_entry(server, "quiet.pth"), progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    fetch_weights(_entry(server, "loud.pth"), progress=True)
    assert capsys.readouterr().err != ""


def test_recorded_size_is_checked_too(server, cache):
    """A server that announces and sends a shorter file than the record's size."""
    data = _state_bytes()
    server.files["short.pth"] = data
    with pytest.raises(
        WeightsUnavailableError, match=f"cut off after {len(data)} of {len(data) + 10} bytes"
    ):
        fetch_weights(_entry(server, "short.pth", size=len(data) + 10), progress=False)
    assert _leftovers(cache) == []
