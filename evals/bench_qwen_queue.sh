#!/usr/bin/env bash
# The order the Qwen benchmark was run in on 2 cores, one LLM job at a time; every step resumes, so run the
# whole script again (nohup) after an interruption and finished steps cost nothing:
#   nohup bash evals/bench_qwen_queue.sh > runs/queue.log 2>&1 &
# Seed 0 of every dataset first, the compile and feedback rows next, then the other seeds. After each LLM step
# the students-only grid (min 300 steps, bench_qwen2.5-coder-1.5b_300steps.toml) trains on what it made, and
# both reports are rewritten.
set -uo pipefail
cd "$(dirname "$0")/.."
P=.venv/bin/promptmix
D=../shared/data
MAIN=(--config evals/bench_qwen2.5-coder-1.5b.toml --data-dir $D --out runs/bench_qwen)
LONG=(--config evals/bench_qwen2.5-coder-1.5b_300steps.toml --data-dir $D --out runs/bench_qwen_300steps)
PAPER=baseline,a1,a2,llm,eda,nomix,baseline5

reports() {
  $P bench "${MAIN[@]}" --report-only --report-dir evals/results/bench_qwen2.5-coder-1.5b
  $P bench "${LONG[@]}" --report-only --report-dir evals/results/bench_qwen2.5-coder-1.5b_300steps
}
step() {  # step DATASETS SEEDS METHODS: the main grid's cells, then the same students trained longer
  echo "=== $(date -u +%H:%M) main $*"
  $P bench "${MAIN[@]}" --datasets "$1" --seeds "$2" --methods "$3" || echo "!!! main step failed: $*"
  $P bench "${LONG[@]}" --datasets "$1" --seeds "$2" --methods "$3" || echo "!!! long step failed: $*"
  reports
}
compile() {  # compile DATASET: relabeler (bootstrap or mipro, best on leave-one-out dev) and generator
  [ -f "programs/$1/generator.json" ] && return 0
  echo "=== $(date -u +%H:%M) compile $1"
  $P compile --dataset "$1" --data-dir $D --out "programs/$1" --program relabeler --optimizer bootstrap,mipro \
    --threads 2 || echo "!!! compile relabeler $1 failed"
  $P compile --dataset "$1" --data-dir $D --out "programs/$1" --program generator --optimizer bootstrap \
    --threads 2 || echo "!!! compile generator $1 failed"
}

step trec6,subj 0 $PAPER
step trec6 0 a2fb
compile trec6
step trec6 0 a2c
step twitter_complaints 0 $PAPER
compile subj
step subj 0 a2c,a2fb
step trec6,subj 1 a1,a2,nomix,baseline,eda,baseline5,a2c,a2fb
compile twitter_complaints
step twitter_complaints 0 a2c,a2fb
step trec6,subj,twitter_complaints 1 $PAPER,a2x
step trec6,subj,twitter_complaints 2 $PAPER,a2c,a2fb,a2x
step trec6,subj,twitter_complaints 0 a2x
step banking77 0 $PAPER
echo "=== $(date -u +%H:%M) queue done"
