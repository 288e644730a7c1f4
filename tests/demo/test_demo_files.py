"""The demo's model file server: GET serves the models, PUT takes the retraining's result."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from modelops_demo.lab import ModelFiles


def test_uploads_land_whole_under_uploads_and_nowhere_else(tmp_path: Path) -> None:
    (tmp_path / "champion").mkdir()
    (tmp_path / "champion" / "model.skops").write_bytes(b"model")
    files = ModelFiles(tmp_path)
    base = f"http://127.0.0.1:{files.port}"
    try:
        assert httpx.get(f"{base}/champion/model.skops").content == b"model"
        assert httpx.put(f"{base}/uploads/model.skops", content=b"new").status_code == 201
        assert (tmp_path / "uploads" / "model.skops").read_bytes() == b"new"
        assert httpx.get(f"{base}/uploads/model.skops").content == b"new"
        # Nothing outside uploads/, no path tricks, no unbounded body.
        for path in ("/champion/model.skops", "/uploads/../champion/model.skops",
                     "/uploads/.hidden", "/uploads/a/b"):
            assert httpx.put(base + path, content=b"x").status_code == 404, path
        assert (tmp_path / "champion" / "model.skops").read_bytes() == b"model"
        with socket.create_connection(("127.0.0.1", files.port), timeout=5) as client:
            client.sendall(b"PUT /uploads/big HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Length: 67108864\r\n\r\n")
            assert client.recv(64).startswith(b"HTTP/1.0 413")
        assert not (tmp_path / "uploads" / "big").exists()
        assert not list((tmp_path / "uploads").glob("*.partial"))
    finally:
        files.stop()
