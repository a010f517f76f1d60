"""`roleforge view` over HTTP: pages answer with the store's content, corpus text escaped,
nothing outside the store served, GET only."""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from tests.pipeline.view.conftest import HOSTILE_EXCERPT, NAME, SCRIPT_TURN, shard_order


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def raw(base: str, method: str, path: str, host: str | None = None) -> tuple[int, bytes]:
    """Send `path` exactly as written (no client-side normalisation of `..` or `%2e`)."""
    where = urlsplit(base)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def page(base: str, path: str) -> str:
    status, headers, body = get(base + path)
    assert status == 200, (path, status, body[:300])
    assert headers["Content-Type"].startswith("text/html")
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none' covers it
    return body.decode("utf-8")


def test_the_root_leads_to_the_versions_with_content_ids_and_parents(view_server, demo_store):
    html = page(view_server, "/")  # one dataset: redirected to it
    store = demo_store.store
    for version in (1, 2):
        assert store.manifest(version).content_id[:16] in html
    assert f'href="/d/{NAME}/v1/">v1</a></td>' in html  # v2's parent, linked


def test_a_turn_holding_a_script_is_shown_as_text_never_run(view_server, demo_store):
    html = page(view_server, f"/d/{NAME}/v1/")
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt; hi &lt;b&gt;there&lt;/b&gt;" in html
    record = page(view_server, f"/d/{NAME}/v1/r/{demo_store.records[0]['id']}")
    assert "<script" not in record and "&lt;script&gt;" in record
    assert SCRIPT_TURN not in record


def test_a_record_shows_its_further_reference_replies_escaped(view_server, demo_store):
    html = page(view_server, f"/d/{NAME}/v1/r/{demo_store.records[0]['id']}")
    assert "2 further accepted replies to the last character turn" in html
    assert '<li class="text">I shall not &lt;b&gt;run&lt;/b&gt; it.</li>' in html
    other = page(view_server, f"/d/{NAME}/v1/r/{demo_store.records[1]['id']}")
    assert "further accepted" not in other


def test_the_rows_page_shows_a_chat_with_persona_narration_and_media(view_server, demo_store):
    html = page(view_server, f"/d/{NAME}/v1/?source=sample")
    assert 'class="turn character"' in html and 'class="turn user"' in html
    assert 'class="turn narration"' in html
    assert "<summary>persona: Aiko</summary>" in html
    assert "A shy librarian &lt;who&gt; writes poems." in html
    image = re.search(r'<img class="media" src="([^"]+)"', html).group(1)
    status, headers, body = get(view_server + image)
    assert status == 200 and headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")
    audio = re.search(r'<audio controls preload="metadata" src="([^"]+)"', html).group(1)
    status, headers, body = get(view_server + audio)
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    plot = re.search(r'<img class="plot" src="([^"]+)"', html).group(1)
    status, headers, body = get(view_server + plot)
    assert status == 200 and headers["Content-Type"] == "image/png"


def test_audio_is_served_by_byte_range(view_server, demo_store):
    record = next(r for r in demo_store.records if r["audios"])
    url = f"{view_server}/d/{NAME}/v1/m/{record['id']}/audios/0.wav"
    whole = record["audios"][0]["bytes"]
    status, headers, body = get(url, {"Range": "bytes=4-11"})
    assert status == 206 and body == whole[4:12]
    assert headers["Content-Range"] == f"bytes 4-11/{len(whole)}"
    status, _, body = get(url, {"Range": "bytes=-4"})
    assert status == 206 and body == whole[-4:]
    status, _, _ = get(url, {"Range": f"bytes={len(whole)}-"})
    assert status == 416


def test_filters_and_paging_links_follow_the_query(view_server, demo_store):
    html = page(view_server, f"/d/{NAME}/v1/?character=Bram&kind=original")
    bram = [
        r for r in demo_store.records if r["character"]["name"] == "Bram" and not r["parent_id"]
    ]
    assert html.count('<section class="row">') == len(bram)
    html = page(view_server, f"/d/{NAME}/v1/?split=train")
    assert html.count('<section class="row">') == 7  # six originals and a variant, one page
    status, _, body = get(f"{view_server}/d/{NAME}/v1/?modality=video")
    assert status == 400 and b"modality must be one of" in body


def test_a_page_token_of_the_viewer_before_is_a_bad_request_that_says_why(view_server, demo_store):
    old = f"0.{demo_store.records[3]['id']}"  # (shard, last id): rows now lie in any order
    status, _, body = get(f"{view_server}/d/{NAME}/v1/?after={old}&page=2")
    assert status == 400 and b"not a page token (&lt;shard&gt;.&lt;row&gt;)" in body
    status, _, body = get(f"{view_server}/d/{NAME}/v1/?after=9.0&page=2")
    assert status == 400 and b"past the version" in body
    assert get(f"{view_server}/d/{NAME}/v1/?after=0.3&page=2")[0] == 200


def test_a_variant_is_shown_beside_its_original_with_ops_and_text_diff(view_server, demo_store):
    variant = next(r for r in demo_store.records if r["parent_id"])
    html = page(view_server, f"/d/{NAME}/v1/r/{variant['id']}")
    assert "Beside its original" in html
    assert "KeyboardAug" in html and "aug_char_p" in html
    assert "<del>question</del><ins>questoin</ins>" in html
    original = page(view_server, f"/d/{NAME}/v1/r/{variant['parent_id']}")
    assert f"/d/{NAME}/v1/r/{variant['id']}" in original  # its variants are listed


def test_quarantine_lists_records_by_reason_with_source_reference(view_server):
    html = page(view_server, f"/d/{NAME}/v1/quarantine")
    assert "placeholder_mismatch" in html and "corpus/dialogues.jsonl:33" in html
    assert HOSTILE_EXCERPT not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_quality_says_what_is_missing_then_counts_flags_clusters_and_tokens(view_server):
    html = page(view_server, f"/d/{NAME}/v1/quality")
    assert "has no <code>quality</code> column" in html
    html = page(view_server, f"/d/{NAME}/v2/quality")
    assert "too_short</a></td><td>2</td>" in html
    assert "cluster c1" in html and html.count('<div class="col">') == 2
    assert "<h3>tokens</h3>" in html and "<meter" in html


def test_the_diff_of_two_versions_links_added_removed_and_changed_rows(view_server, demo_store):
    html = page(view_server, f"/d/{NAME}/diff?a=1&b=2")
    assert "1 added · 1 removed · 1 changed" in html
    removed, changed = demo_store.records[0]["id"], demo_store.records[5]["id"]
    assert f'<a href="/d/{NAME}/v1/r/{removed}">' in html
    assert f'<a href="/d/{NAME}/v2/r/{changed}">' in html
    assert f'<a href="/d/{NAME}/v1/r/{changed}">before</a>' in html


def test_models_show_lineage_promotion_history_curves_and_replies(view_server):
    html = page(view_server, f"/d/{NAME}/models/")
    assert 'class="promoted"' in html and "beats m1" in html and "first model" in html
    assert f'<a href="/d/{NAME}/models/m1/">m1</a></td>' in html  # m2 continued m1
    model = page(view_server, f"/d/{NAME}/models/m2/")
    assert "continued from" in model and "<td>Aiko</td>" in model
    assert "<script" not in model and "&lt;script&gt;document.title" in model
    first = page(view_server, f"/d/{NAME}/models/m1/")
    assert "Evaluations on other versions" in first and "6.7500" in first
    assert f'<a href="/d/{NAME}/v2/">{NAME}@v2</a> test' in first
    status, headers, body = get(f"{view_server}/d/{NAME}/models/m2/training_curve.png")
    assert status == 200 and body.startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "path",
    [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/d/%2e%2e/versions",
        f"/d/{NAME}/..%2f..%2f..%2fetc%2fpasswd",
        f"/d/{NAME}/v1/r/..%2f..%2fv1.json",
        f"/d/{NAME}/v1/m/%2fetc%2fpasswd/images/0",
        f"/d/{NAME}/models/..%2f..%2fversions/training_curve.png",
        f"/d/{NAME}/models/m1/run.json",
        "/static/..%2f__init__.py",
        "/static/%252e%252e/site.py",
        "//etc/passwd",
        "/d//etc/passwd",
        "/%00",
        "/d/%ff/",
        f"/d/{NAME}/v1.json",
        f"/d/{NAME}/v01/../../v1.json",
    ],
)
def test_no_path_outside_the_store_is_served(view_server, path):
    status, body = raw(view_server, "GET", path)
    assert status in (400, 404), (path, status)
    assert b"root:" not in body and b"manifest" not in body and b"import" not in body


def test_an_absolute_path_in_the_request_line_is_not_a_file(view_server):
    status, body = raw(view_server, "GET", "/etc/passwd")
    assert status == 404 and b"root:" not in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
def test_only_get_is_answered(view_server, method):
    status, _ = raw(view_server, method, f"/d/{NAME}/")
    assert status == 405


def test_a_page_that_rebinds_its_name_to_loopback_gets_nothing(view_server):
    port = urlsplit(view_server).port
    status, body = raw(view_server, "GET", f"/d/{NAME}/", host=f"evil.example:{port}")
    assert status == 421 and b"content id" not in body
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert raw(view_server, "GET", f"/d/{NAME}/", host=host)[0] == 200


def test_the_rows_page_answers_json_too_with_media_urls_and_the_next_page(view_server, demo_store):
    import json

    status, headers, body = get(f"{view_server}/d/{NAME}/v1/?split=train&format=json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    data = json.loads(body)
    train = shard_order([r for r in demo_store.records if r["split"] == "train"])
    assert [r["id"] for r in data["rows"]] == [r["id"] for r in train] and data["next"] is None
    image = next(r for r in data["rows"] if r["images"])["images"][0]
    assert image["path"] == "boat.png" and "bytes" not in image
    assert get(view_server + image["url"])[2].startswith(b"\x89PNG")
    assert data["rows"][0]["messages"]  # text as stored: JSON, not HTML, escapes nothing


def test_rows_filtered_by_a_quality_flag_show_the_flag(view_server):
    html = page(view_server, f"/d/{NAME}/v2/?flag=too_short")
    assert html.count('<section class="row">') == 2
    assert html.count('<span class="flag">too_short</span>') == 2
    v1 = page(view_server, f"/d/{NAME}/v1/")
    assert 'title="this version has no quality column"' in v1
