"""benchmarks/relabel_quality.py: written descriptions are measured on their own relabel calls, and a re-run
measures only what its --json lacks."""

import importlib.util
import json
from pathlib import Path

import pytest

from promptmix_dspy.llm.settings import LMSettings, build_handle
from promptmix_dspy.testing import RuleResponder, ScriptedServer

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "relabel_quality.py"
ONE_LABEL = "of one candidate only."


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("relabel_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _handle(server: ScriptedServer):
    lm = LMSettings(model="hosted_vllm/scripted", api_base=server.base_url, cache=False)
    return build_handle(lm, lm.model, server.base_url, embedded=False)


def _asked(server: ScriptedServer) -> int:
    return sum(1 for r in server.requests if ONE_LABEL in r["messages"][0]["content"])


def test_written_descriptions_make_their_own_relabel_calls(bench, tmp_path, data_dir):
    # the describe rule writes "a sentence" for every class, so the written run's prompts differ from the given run's
    responder = RuleResponder(describe=lambda fields: f"Texts whose answer is {fields.get('class_name', 'x')}.")
    with ScriptedServer(responder) as server:
        handle = _handle(server)
        given = bench.measure("trec6", "candidates", 12, str(data_dir), handle, tmp_path, ("none",), False)
        after_given = _asked(server)
        written = bench.measure("trec6", "candidates", 12, str(data_dir), handle, tmp_path, ("none",), True)
        after_written = _asked(server)
    texts = given[0]["texts"]
    assert texts == 12 and after_given == texts
    # the same root (one temporary folder per benchmark run): the written run must not resume the given one's journal
    assert after_written - after_given == texts
    row = written[0]
    assert isinstance(row["describe_calls"], int) and row["describe_calls"] > 0
    assert row["descriptions"] == f"written ({row['describe_calls']} calls)"
    assert row["cards"]["LOC"] == "Texts whose answer is LOC."
    assert row["calls"] == texts  # the cost figures are of calls made, not an empty history's zeros


def test_a_rerun_measures_only_what_the_json_lacks(bench, tmp_path, monkeypatch):
    made = []

    def fake_measure(name, layout, texts, data_dir, handle, root, calibrations, written):
        made.append((name, layout, written))
        return [{"dataset": name, "layout": layout, "calibration": c, "texts": texts, "accuracy": 0.5,
                 "macro_f1": 0.5, "shares": {}, "descriptions": "written (1 calls)" if written else "given"}
                for c in calibrations]

    class Opened:
        def __enter__(self):
            return object()

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(bench, "measure", fake_measure)
    monkeypatch.setattr(bench, "table", lambda rows: f"{len(rows)} rows")
    monkeypatch.setattr("promptmix_dspy.llm.settings.open_lm", lambda settings: Opened())
    out = tmp_path / "figures.json"
    out.write_text(json.dumps(fake_measure("subj", "candidates", 5, "", None, None, ("none",), False)))
    made.clear()
    bench.main(["--datasets", "subj", "--layouts", "candidates", "--calibrations", "none", "--descriptions", "both",
                "--json", str(out)])
    assert made == [("subj", "candidates", True)]  # the given row was in the JSON already
    assert [r["descriptions"] for r in json.loads(out.read_text())] == ["given", "written (1 calls)"]
