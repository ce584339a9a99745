"""The download from mirrors (scembed.sources.fetch) against a plain local HTTP server;
the network's faults (stalls, dribbles, resets) are in test_faults_download.py."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import pytest
from conftest import closed_port_url, serve, zeisel_example, zeisel_text
from test_sources_zeisel import cut_in_gene_rows

from scembed.checks import DataError
from scembed.sources import download, zeisel_layout_ok

# --------------------------------------------------------------------------- download


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


PATIENCE = {"stall_timeout": 10, "min_speed": 0, "retries": 0, "retry_delay": 0}


def test_download_falls_back_to_the_second_mirror(tmp_path):
    body = zeisel_text(*zeisel_example()).encode()
    dest = tmp_path / "download" / "expression.txt"
    with serve({"/zeisel.txt": (body, None)}) as base:
        urls = [f"{base}/missing.txt", closed_port_url(), f"{base}/zeisel.txt"]
        provenance = download(urls, dest, verify=zeisel_layout_ok, **PATIENCE)
    assert dest.read_bytes() == body
    assert provenance["url"] == urls[2]
    assert provenance["sha256"] == hashlib.sha256(body).hexdigest()
    assert provenance["bytes"] == len(body)
    assert leftovers(dest.parent) == ["expression.txt"]


def test_download_accepts_the_pinned_checksum(tmp_path):
    body = zeisel_text(*zeisel_example()).encode()
    dest = tmp_path / "expression.txt"
    with serve({"/zeisel.txt": (body, None)}) as base:
        sha = hashlib.sha256(body).hexdigest()
        assert download([f"{base}/zeisel.txt"], dest, sha256=sha, **PATIENCE)["sha256"] == sha


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        ("short_length", "IncompleteRead|truncated"),  # Content-Length > body
        ("cut_rows", "truncated"),  # correct Content-Length, body cut in a gene row
        ("bad_checksum", "does not match the pinned"),
    ],
)
def test_download_rejects_incomplete_or_wrong_files(tmp_path, route, reason):
    body = zeisel_text(*zeisel_example()).encode()
    cut = cut_in_gene_rows(body.decode()).encode()
    routes = {
        "/short_length": (body[: len(body) // 2], len(body)),
        "/cut_rows": (cut, None),
        "/bad_checksum": (body, None),
    }
    dest = tmp_path / "expression.txt"
    sha256 = "ab" * 32 if route == "bad_checksum" else None
    with serve(routes) as base, pytest.raises(DataError) as err:
        download([f"{base}/{route}"], dest, sha256=sha256, verify=zeisel_layout_ok, **PATIENCE)
    assert f"{base}/{route}" in str(err.value)
    assert any(re.search(reason, line) for line in str(err.value).splitlines())
    assert not dest.exists()
    assert leftovers(tmp_path) == []  # no .part file left behind


def test_download_all_mirrors_fail(tmp_path):
    dest = tmp_path / "data" / "expression.txt"
    refused = closed_port_url()
    with serve({}) as base:
        urls = [f"{base}/a/expression.txt", refused]
        with pytest.raises(DataError) as err:
            download(urls, dest, verify=zeisel_layout_ok, **PATIENCE)
    message = str(err.value)
    lines = message.splitlines()
    assert any(urls[0] in line and "404" in line for line in lines)
    assert any(refused in line and "refused" in line.lower() for line in lines)
    assert "path: /where/you/saved/it" in message
    assert not dest.exists() and leftovers(dest.parent) == []


def test_download_from_a_file_url(tmp_path):
    """requests serves http(s) only; a file:// mirror (documented in the config schema)
    is read directly, with the same checks."""
    body = zeisel_text(*zeisel_example()).encode()
    source = tmp_path / "mirror" / "expression.txt"
    source.parent.mkdir()
    source.write_bytes(body)
    dest = tmp_path / "download" / "expression.txt"
    missing = (tmp_path / "nowhere.txt").as_uri()
    provenance = download([missing, source.as_uri()], dest, verify=zeisel_layout_ok, **PATIENCE)
    assert dest.read_bytes() == body and provenance["url"] == source.as_uri()
    assert leftovers(dest.parent) == ["expression.txt"]
    with pytest.raises(DataError) as err:
        download([missing], dest, **PATIENCE)
    assert f"{missing}: no such file" in str(err.value) and "correct the URL" in str(err.value)


@pytest.mark.parametrize("url", ["ftp://example.org/expression.txt", "expression.txt"])
def test_download_from_a_url_without_http_says_how_to_write_it(tmp_path, url):
    with pytest.raises(DataError) as err:
        download([url], tmp_path / "expression.txt", **PATIENCE)
    assert "write a full http://, https:// or file:// URL" in str(err.value)
    assert "(1 attempt)" in str(err.value) and leftovers(tmp_path) == []


def test_download_logs_its_progress(tmp_path, monkeypatch, caplog):
    import scembed.sources.fetch

    monkeypatch.setattr(scembed.sources.fetch, "PROGRESS_EVERY", 0)
    body = bytes(200_000)
    with serve({"/big": (body, None)}) as base, caplog.at_level(logging.INFO, "scembed"):
        download([f"{base}/big"], tmp_path / "big.bin", **PATIENCE)
    assert f"{base}/big: " in caplog.text and " of 0.2 MiB so far, " in caplog.text
