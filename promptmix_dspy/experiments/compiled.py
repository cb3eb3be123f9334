"""a2c and a2c-dev: a2's very texts relabeled by a relabeler compiled on the cell's own labelled rows.

The programs folder (``spec.relabel_programs_dir``: programs/<dataset>/seed<k> for a2c, .../seed<k>-dev10 for
a2c-dev) must have been compiled on exactly the rows the cell may see: its seeds (a2c, scored leave-one-out,
``bootstrap``), or its seeds and DEV_PER_CLASS more labelled train texts per class (a2c-dev, ``bootstrap`` and
``mipro``, the better on dev kept). A folder compiled on other rows (another seed's seeds, another dev split) is
refused, naming both; a missing one is compiled first, with the grid's LM. The generation's texts are then
relabeled in the cell's own folder (relabel/), so a2c and a2 differ in the relabeler alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

from promptmix_dspy.data.fewshot import few_shot_split
from promptmix_dspy.experiments.methods import Cell
from promptmix_dspy.llm.runner import Budget
from promptmix_dspy.llm.settings import LMHandle
from promptmix_dspy.method.programs import META, check_rows, programs_identity, read_meta
from promptmix_dspy.method.signatures import ClassCard
from promptmix_dspy.pipeline.program import build_program
from promptmix_dspy.pipeline.relabel import relabel
from promptmix_dspy.store.files import atomic_write_json, atomic_write_jsonl, read_json

__all__ = ["OPTIMIZERS", "compiled_relabel", "ensure_compiled"]

logger = logging.getLogger(__name__)
OPTIMIZERS = {"leave-one-out": "bootstrap", "dev-split": "bootstrap,mipro"}
# MIPROv2's budget on 2 cores: 4 instruction candidates, 8 trials over the dev split (its "light" is ~3x this)
SETTINGS = {"leave-one-out": {}, "dev-split": {"auto": None, "num_candidates": 4, "num_trials": 8}}


def ensure_compiled(cell: Cell, handle: LMHandle) -> Path:
    """The cell's programs folder, compiled (relabeler only) when it has none; refused when compiled on other
    labelled rows than the cell's."""
    from promptmix_dspy.compile.config import CompileConfig
    from promptmix_dspy.compile.optimize import compile_programs

    spec = cell.spec
    folder = Path(spec.relabel_programs_dir)
    split = few_shot_split(cell.dataset, spec.shots, spec.seed, spec.dev_per_class)
    if not (folder / META).exists():
        mode = "dev-split" if split.dev else "leave-one-out"
        logger.info("compiling the relabeler for %s seed %d (%s) into %s", spec.dataset, spec.seed, mode, folder)
        config = CompileConfig(program="relabeler", optimizer=OPTIMIZERS[mode], settings=SETTINGS[mode],
                               shots=spec.shots, seed=spec.seed, dev_per_class=spec.dev_per_class, top_k=spec.top_k,
                               num_threads=spec.threads or 4)
        compile_programs(cell.dataset, folder, config, handle)
    check_rows(read_meta(folder), split, folder)
    return folder


def compiled_relabel(cell: Cell, gen_dir: Path, out: Path, handle: LMHandle, budget: Budget) -> list[dict]:
    """The generation's selected texts relabeled with the compiled relabeler, journaled in ``out``."""
    spec = cell.spec
    folder = ensure_compiled(cell, handle)
    if (out / "augmented.jsonl").exists() and read_json(out / "made.json") == _made(gen_dir, folder):
        return _read(out / "augmented.jsonl")
    descriptions = read_json(gen_dir / "descriptions.json")
    task = read_json(gen_dir / "task.json")["task"] if (gen_dir / "task.json").exists() else None
    seeds = cell.split.seeds_by_label()
    cards = [ClassCard(name=label, description=descriptions[label], examples=seeds[label]) for label in cell.split.labels]
    program = build_program(cards, spec.augment_config("mix"), None, task)
    program.relabeler.load(str(folder / "relabeler.json"))
    out.mkdir(parents=True, exist_ok=True)
    rows, _, record = relabel(program, _read(gen_dir / "selected.jsonl"), spec.augment_config("mix"), handle, out,
                              budget)
    atomic_write_jsonl(out / "augmented.jsonl", rows)
    atomic_write_json(out / "labelling.json", record)
    atomic_write_json(out / "made.json", _made(gen_dir, folder))
    return rows


def _made(gen_dir: Path, folder: Path) -> dict:
    from promptmix_dspy.store.identity import file_sha256

    return {"selected": file_sha256(gen_dir / "selected.jsonl"), "programs": programs_identity(folder)}


def _read(path: Path) -> list[dict]:
    from promptmix_dspy.data.datasets import read_jsonl

    return [row for _, row in read_jsonl(path)]
