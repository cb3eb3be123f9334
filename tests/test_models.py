"""The local model registry: assembling split model files from part packages, verifying them, resolving names
and paths. Fake part packages are real packages on sys.path, found the way the real ones are (find_spec)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from promptmix_dspy.llm.models import (
    LOCAL_MODELS,
    LocalModel,
    ModelFileError,
    assemble,
    model_file,
    model_status,
    resolve_local_model,
)

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 1500, b"c" * 700]


def _fake_model(tmp_path: Path, monkeypatch, parts: list[bytes] = PARTS, tag: str = "t",
                sha: str | None = None) -> LocalModel:
    """Part packages fakemodel_<tag>_part<k> holding data/part<kk>.bin, importable from tmp_path."""
    site = tmp_path / "site"
    for k, data in enumerate(parts, start=1):
        pkg = site / f"fakemodel_{tag}_part{k}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{k:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PROMPTMIX_HOME", str(tmp_path / "home"))
    joined = b"".join(PARTS)
    return LocalModel(name=f"fake-{tag}", alias=f"fake-{tag}", file_name=f"fake-{tag}.gguf", size=len(joined),
                      sha256=sha or hashlib.sha256(joined).hexdigest(),
                      parts=tuple(f"fakemodel_{tag}_part{k}" for k in range(1, len(PARTS) + 1)),
                      pip_names=tuple(f"fakemodel-{tag}-part{k}==1.0" for k in range(1, len(PARTS) + 1)),
                      licence="test", summary="test")


def _leftovers(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "home").rglob("*") if p.is_file() and "verified" not in p.parts]


def test_the_right_parts_assemble_into_one_verified_file_and_later_uses_start_at_once(tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch)
    path = model_file(model)
    assert path.read_bytes() == b"".join(PARTS) and path.parent == tmp_path / "home" / "models"
    assert _leftovers(tmp_path) == [path]  # no temporary file left
    before = path.stat().st_mtime_ns
    assert model_file(model) == path and path.stat().st_mtime_ns == before  # not assembled again


def test_a_wrong_hash_is_refused_and_leaves_no_file(tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch, sha="0" * 64)
    with pytest.raises(ModelFileError, match="sha256 .* expected 0000.*reinstall"):
        model_file(model)
    assert _leftovers(tmp_path) == []


def test_a_missing_part_names_the_package_to_install(tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch)
    missing = LocalModel(**{**model.__dict__, "parts": (*model.parts[:2], "fakemodel_t_part_absent")})
    with pytest.raises(ModelFileError, match=r"part 3 of 3 is not installed .*pip install fakemodel-t-part3==1.0"):
        model_file(missing)
    assert _leftovers(tmp_path) == []


def test_a_truncated_part_is_refused_and_leaves_no_file(tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch, parts=[PARTS[0], PARTS[1][:-10], PARTS[2]])
    with pytest.raises(ModelFileError, match="bytes, expected"):
        model_file(model)
    assert _leftovers(tmp_path) == []


def test_an_interrupted_assembly_leaves_nothing_that_passes_as_complete(tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch)

    def interrupted(files, out):
        out.write_bytes(b"GGUF" + b"a" * 10)  # half written when Ctrl-C arrives
        raise KeyboardInterrupt

    monkeypatch.setattr("promptmix_dspy.llm.models._join", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model_file(model)
    assert _leftovers(tmp_path) == []
    monkeypatch.undo()
    model = _fake_model(tmp_path / "again", monkeypatch)
    assert model_file(model).read_bytes() == b"".join(PARTS)


def test_a_file_that_changed_after_it_was_verified_is_checked_again(tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch)
    path = model_file(model)
    path.write_bytes(b"X" * model.size)  # same size, other content
    with pytest.raises(ModelFileError, match="sha256"):
        model_file(model)


def test_any_gguf_by_path_gets_an_alias_from_its_name_and_others_are_refused(tmp_path):
    other = tmp_path / "Mistral 7B Instruct.Q4.gguf"
    other.write_bytes(b"GGUF")
    resolved = resolve_local_model(str(other))
    assert resolved.alias == "mistral-7b-instruct.q4" and not resolved.verified and resolved.path == other
    with pytest.raises(ModelFileError, match="neither a known model"):
        resolve_local_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelFileError, match="neither a known model"):
        resolve_local_model("no-such-model")


def test_two_models_have_their_own_alias_and_cache_identity():
    qwen, smol = resolve_local_model("qwen2.5-coder-1.5b"), resolve_local_model("smollm2-135m")
    assert qwen.alias != smol.alias and qwen.identity != smol.identity
    assert qwen.identity.startswith("llama.cpp:qwen2.5-coder-1.5b-instruct-q4_k_m.gguf:1117320768:")


def test_the_status_of_every_known_model():
    status = {m: model_status(LOCAL_MODELS[m]) for m in LOCAL_MODELS}
    assert status["qwen2.5-coder-1.5b"]["default"] and not status["smollm2-135m"]["default"]
    assert all(s["state"] in ("ready", "installed, assembled on first use") for s in status.values())
    assert "Apache-2.0" in status["qwen2.5-coder-1.5b"]["licence"]


def test_assemble_refuses_to_overwrite_with_a_bad_file(tmp_path, monkeypatch):
    model = _fake_model(tmp_path, monkeypatch)
    good = model_file(model)
    bad = LocalModel(**{**model.__dict__, "sha256": "f" * 64})
    with pytest.raises(ModelFileError):
        assemble(bad, good)
    assert good.read_bytes() == b"".join(PARTS)  # the good file is still there


def test_the_registry_slots_are_the_default_and_the_server_gets_every_core(monkeypatch, tmp_path):
    from promptmix_dspy.llm import server as server_module
    from promptmix_dspy.llm.models import ResolvedModel

    resolved = ResolvedModel("m", tmp_path / "m.gguf", "m", 4096, slots=3, verified=True)
    monkeypatch.setattr("promptmix_dspy.llm.models.resolve_local_model", lambda name: resolved)
    monkeypatch.setattr(server_module, "_cpu_count", lambda: 8)
    assert server_module.LocalServer("m").parallel == 3  # the registry's slots
    assert server_module.LocalServer("m").threads == 8  # one process: every core, whatever the slots
    assert server_module.LocalServer("m", parallel=1).threads == 8
    assert server_module.LocalServer("m", parallel=4, threads=3).threads == 3