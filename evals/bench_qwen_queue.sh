#!/usr/bin/env bash
# The order the Qwen benchmark was run in on 2 cores, one LLM job at a time; every step resumes, so run the
# whole script again (nohup) after an interruption and finished steps cost nothing:
#   nohup bash evals/bench_qwen_queue.sh > runs/queue.log 2>&1 &
# Seed 0 first (trec6 and subj, then the compile, a2c and second-round rows, then twitter_complaints, then the
# equal-budget a2x row, so that one seed holds every method), then the other seeds; the second round (a2fb) runs in the students-only grid first, where round 1's student learns. After each LLM step
# the students-only grid (min 300 steps, bench_qwen2.5-coder-1.5b_300steps.toml) trains on what it made, and
# both reports are rewritten. A fresh clone (or a lost runs/) first adopts the finished cells of the committed
# reports (`bench --adopt`: only cells made with exactly these settings), so it resumes where they stop
# instead of redoing them; the reports keep the plots and examples committed for the adopted cells.
set -uo pipefail
cd "$(dirname "$0")/.."
P=.venv/bin/promptmix
D=../shared/data
MAIN=(--config evals/bench_qwen2.5-coder-1.5b.toml --data-dir $D --out runs/bench_qwen)
LONG=(--config evals/bench_qwen2.5-coder-1.5b_300steps.toml --data-dir $D --out runs/bench_qwen_300steps)
PAPER=baseline,a1,a2,llm,eda,nomix,baseline5

R=evals/results
reports() {  # both reports and the compile tables' student rows, when a cell finished since the last report
  local d  # the seed-2 loop below iterates over d: this function's own loop must not move it
  [ -z "$(find runs/bench_qwen/cells runs/bench_qwen_300steps/cells -name result.json \
          -newer $R/bench_qwen2.5-coder-1.5b_300steps/results.md 2>/dev/null | head -1)" ] \
    && [ -f $R/bench_qwen2.5-coder-1.5b_300steps/results.md ] && return 0
  $P bench "${MAIN[@]}" --report-only --report-dir $R/bench_qwen2.5-coder-1.5b
  $P bench "${LONG[@]}" --report-only --report-dir $R/bench_qwen2.5-coder-1.5b_300steps
  # the compile tables' student rows; an adopted cell's generation row stays as committed (compile_students.py)
  for d in trec6 subj twitter_complaints; do
    [ -f "$R/compile_gain_$d.md" ] && .venv/bin/python evals/compile_students.py --dataset $d \
      --table "$R/compile_gain_$d.md" --generations runs/bench_qwen \
      --grid "300-step students=$R/bench_qwen2.5-coder-1.5b_300steps" \
      --grid "authors' students=$R/bench_qwen2.5-coder-1.5b" > /dev/null
  done
}
step() {  # step DATASETS SEEDS METHODS: the main grid's cells, then the same students trained longer
  echo "=== $(date -u +%H:%M) main $*"
  $P bench "${MAIN[@]}" --datasets "$1" --seeds "$2" --methods "$3" || echo "!!! main step failed: $*"
  echo "=== $(date -u +%H:%M) long $*"
  $P bench "${LONG[@]}" --datasets "$1" --seeds "$2" --methods "$3" || echo "!!! long step failed: $*"
  reports
}
compile() {  # compile DATASET [ARGS]: relabeler and generator (bootstrap; the uncompiled one is kept where it
  [ -f "programs/$1/meta.json" ] && return 0    # scores higher on dev), with the gain table
  echo "=== $(date -u +%H:%M) compile $*"
  .venv/bin/python evals/compile_gain.py --dataset "$1" --data-dir $D --optimizer bootstrap --test-size 30 \
    --save "programs/$1" --save-from bootstrap --table "evals/results/compile_gain_$1.md" "${@:2}" \
    || echo "!!! compile $1 failed"
}

long() {  # long DATASETS SEEDS METHODS: the students-only grid alone (a2fb's second round is the cell's own
  echo "=== $(date -u +%H:%M) long $*"  # LLM work, aimed at that grid's round-1 student)
  $P bench "${LONG[@]}" --datasets "$1" --seeds "$2" --methods "$3" || echo "!!! long step failed: $*"
  reports
}

# the committed reports' finished cells (each checked against these settings), before any step
$P bench "${MAIN[@]}" --adopt $R/bench_qwen2.5-coder-1.5b/results.jsonl --report-only > /dev/null \
  || { echo "!!! adopting the main grid's committed cells failed"; exit 1; }
$P bench "${LONG[@]}" --adopt $R/bench_qwen2.5-coder-1.5b_300steps/results.jsonl --report-only > /dev/null \
  || { echo "!!! adopting the 300-step grid's committed cells failed"; exit 1; }
step trec6,subj 0 $PAPER
compile trec6
step trec6 0 a2c
long trec6 0 a2fb
step twitter_complaints 0 $PAPER
compile subj
step subj 0 a2c
long subj 0 a2fb
# Two classes: leave-one-out over 4 seeds cannot tell programs apart (subj tied at 1.000), so the
# relabeler's dev is 10 more train texts per class (never test).
compile twitter_complaints --dev-per-class 10
step twitter_complaints 0 a2c
long twitter_complaints 0 a2fb
step trec6,subj,twitter_complaints 0 a2x
step trec6,subj 1 $PAPER,a2c
long trec6,subj 1 a2fb
step trec6,subj,twitter_complaints 1 a2x
step twitter_complaints 1 $PAPER,a2c
long twitter_complaints 1 a2fb
# Seed 2 one dataset at a time, the methods without the teacher's 500 calls first, so that a sitting which
# ends mid-seed leaves whole cells of the main comparison in both grids.
for d in trec6 subj twitter_complaints; do
  step $d 2 baseline,a1,a2,eda,baseline5
  step $d 2 llm,nomix,a2c,a2x
  long $d 2 a2fb
done
step trec6,subj,twitter_complaints 0,1,2 a2fb
step banking77 0 $PAPER
echo "=== $(date -u +%H:%M) queue done"
