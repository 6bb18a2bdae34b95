"""fetch_weights against a real HTTP server on 127.0.0.1: hash check, cut-off, HTTP errors, cache."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading

import pytest
import torch

from ofa_explore.weights import WEIGHTS, PublishedWeights, WeightsUnavailableError, fetch_weights


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
                self.wfile.write(data[:len(data) // 2] if name in cut else data)
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


def _entry(server, filename: str) -> PublishedWeights:
    return PublishedWeights("dofa-test", "dofa_v1", filename, f"{server.url}/{filename}",
                            "CC-BY-4.0", "-", "test entry", 768)


def _state_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"cls_token": torch.zeros(1, 1, 768), "w": torch.arange(5000.0)}, buffer)
    return buffer.getvalue()


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_sha256_prefix_comes_from_torchgeo_names():
    assert WEIGHTS["dofa-base-v1"].sha256_prefix == "a0275954"
    assert WEIGHTS["dofa-large-v1-legacy"].sha256_prefix == "fbd47fa9"
    assert WEIGHTS["dofa-base-v2"].sha256_prefix is None
    assert WEIGHTS["ofa-net-base"].sha256_prefix is None


def test_good_file_is_downloaded_checked_and_cached(server, cache):
    data = _state_bytes()
    name = f"dofa_test-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    server.files[name] = data
    entry = _entry(server, name)
    assert entry.sha256_prefix == hashlib.sha256(data).hexdigest()[:8]
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


def test_wrong_hash_is_refused_and_nothing_kept(server, cache):
    data = b"not the published file" * 100
    server.files["dofa_test-a0275954.pth"] = data
    with pytest.raises(WeightsUnavailableError) as err:
        fetch_weights(_entry(server, "dofa_test-a0275954.pth"), progress=False)
    message = str(err.value)
    assert "SHA-256 does not start with a0275954" in message
    assert f"it starts with {hashlib.sha256(data).hexdigest()[:8]}" in message
    assert "nothing was kept" in message and "path=" in message and "ofa convert" in message
    assert _leftovers(cache) == []


@pytest.mark.parametrize("name", ["cut.pth", "dofa_test-0123abcd.pth"])
def test_cut_off_download_is_refused_and_nothing_kept(server, cache, name):
    data = _state_bytes()
    if name != "cut.pth":  # a name carrying the right hash of the whole file
        name = f"dofa_test-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    server.files[name] = data
    server.cut.add(name)
    with pytest.raises(WeightsUnavailableError) as err:
        fetch_weights(_entry(server, name), progress=False)
    message = str(err.value)
    assert "path=" in message
    if name == "cut.pth":
        assert f"cut off after {len(data) // 2} of {len(data)} bytes" in message
    else:  # the hash check sees it first
        assert "SHA-256 does not start with" in message
    assert _leftovers(cache) == []


def test_http_error_names_the_status_and_keeps_nothing(server, cache):
    with pytest.raises(WeightsUnavailableError) as err:
        fetch_weights(_entry(server, "missing-a0275954.pth"), progress=False)
    assert "HTTP 404" in str(err.value) and "ofa convert" in str(err.value)
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
