"""The optional LLM judge against a local OpenAI-compatible endpoint on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.trainers.test_comparison import with_losses
from trainers.comparison import IncomparableEvaluations, compare
from trainers.config import JudgeConfig
from trainers.judge import RUBRICS, Judge, JudgeError, rubric_text

REPLIES = [
    {
        "id": "a",
        "character": "Vela",
        "prompt": "Storm?",
        "reference": "Around!",
        "reply": "Go around.",
    },
    {"id": "b", "character": "Vela", "prompt": "Chase?", "reference": "Ha!", "reply": "As an AI"},
    {
        "id": "c",
        "character": "Hoot",
        "prompt": "Why?",
        "reference": "Whooo?",
        "reply": "Whooo can?",
    },
]


class ChatCompletions(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions: 'Score: 1' for replies that say 'AI', else 'Score: 4'."""

    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 (the http.server name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), **body}
        )
        score = 1 if "AI" in body["messages"][-1]["content"] else 4
        answer = {"choices": [{"message": {"role": "assistant", "content": f"Score: {score}\nok"}}]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatCompletions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ChatCompletions.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_a_judge_scores_each_reply_and_records_model_rubric_hash_and_sampling(
    endpoint, monkeypatch
):
    monkeypatch.setenv("JUDGE_KEY", "secret")
    cfg = JudgeConfig(base_url=endpoint, model="judge-7b", api_key_env="JUDGE_KEY")
    block = Judge(cfg).judge(REPLIES)
    assert block["scores"] == {"a": 4, "b": 1, "c": 4}
    assert block["mean"] == pytest.approx(3.0)
    assert block["per_character"] == {"Hoot": 4.0, "Vela": 2.5}
    identity = block["identity"]
    assert identity["model"] == "judge-7b" and identity["rubric"] == "character_consistency"
    assert len(identity["rubric_sha256"]) == 64 and identity["temperature"] == 0.0
    sent = ChatCompletions.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer secret"
    assert sent["messages"][0]["content"] == RUBRICS["character_consistency"]
    assert sent["model"] == "judge-7b" and sent["seed"] == 0


def test_a_custom_rubric_file_is_hashed_by_its_text(endpoint, tmp_path):
    rubric = tmp_path / "mine.txt"
    rubric.write_text("Score 1-5 for pirate speech. Answer 'Score: N'.")
    block = Judge(JudgeConfig(base_url=endpoint, model="j", rubric=str(rubric))).judge(REPLIES)
    other = Judge(JudgeConfig(base_url=endpoint, model="j")).judge(REPLIES)
    assert block["identity"]["rubric"] == "mine.txt"
    assert block["identity"]["rubric_sha256"] != other["identity"]["rubric_sha256"]


def test_scores_of_different_judges_are_never_compared(endpoint):
    losses = [3.0, 3.1, 2.9, 3.2]
    one = Judge(JudgeConfig(base_url=endpoint, model="judge-7b")).judge(REPLIES)
    two = Judge(JudgeConfig(base_url=endpoint, model="judge-70b")).judge(REPLIES)

    def judged(model_id, block):
        scored = with_losses(model_id, losses)
        return replace(scored, evaluation={**scored.evaluation, "judge": block})

    rules = {"eval_loss": 0.5, "judge_score": 0.0}
    assert compare(judged("new", one), judged("old", one), rules).promote
    with pytest.raises(IncomparableEvaluations, match="different judges or rubrics"):
        compare(judged("new", one), judged("old", two), rules)


def test_an_endpoint_that_is_down_fails_in_one_line():
    cfg = JudgeConfig(base_url="http://127.0.0.1:9/v1", model="j", timeout_s=2)
    with pytest.raises(JudgeError, match="judge j at http://127.0.0.1:9/v1/chat/completions"):
        Judge(cfg).score(REPLIES[0])


def test_a_recipe_names_its_judge_under_eval():
    from pipeline.recipe import parse_recipe

    data = {"name": "ds", "sources": [{"name": "s", "path": "x.jsonl"}]}
    judge = {"base_url": "http://127.0.0.1:8000/v1", "model": "m", "rubric": "engagement"}
    recipe = parse_recipe({**data, "eval": {"judge": judge}}, check_ops=False)
    assert rubric_text(recipe.eval.judge) == RUBRICS["engagement"]
    assert recipe.recipe_hash == parse_recipe(data, check_ops=False).recipe_hash


def test_retrain_judges_the_replies_of_each_model_it_compares(endpoint, tmp_path):
    from pipeline.execution.retrain import RetrainJob
    from pipeline.recipe import parse_recipe

    recipe = parse_recipe(
        {
            "name": "ds",
            "store": str(tmp_path),
            "sources": [{"name": "s", "path": "x.jsonl"}],
            "train": {"model": "tiny-random"},
            "eval": {"judge": {"base_url": endpoint, "model": "judge-7b"}},
        },
        check_ops=False,
    )
    scored = replace(with_losses("new", [3.0, 3.1, 2.9]), replies=tuple(REPLIES))
    judged = RetrainJob(recipe)._judged()(scored)
    assert judged.evaluation["judge"]["mean"] == pytest.approx(3.0)
    assert judged.metric("judge_score") == pytest.approx(3.0)
