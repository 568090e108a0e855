#!/usr/bin/env bash
# Ranganathan et al. (ICIP 2017): entropy sampling with the joint objective (cross-entropy +
# lambda * mean entropy of unlabeled predictions) against plain cross-entropy, over 5 seeds.
#
#   scripts/reproduce_ranganathan.sh [--smoke]
set -euo pipefail
DAL_RUN=${DAL_RUN:-dal-run}; DAL_REPORT=${DAL_REPORT:-dal-report}
out=${OUT:-outputs/reproduce/ranganathan}
seeds=0,1,2,3,4; extra=()
[ "${1:-}" = "--smoke" ] && { seeds=0,1; extra=(budget.max_labels=300 trainer.epochs=10); }
"$DAL_RUN" -m +experiment=ranganathan_digits trainer.objective=joint_entropy,cross_entropy seed=$seeds "${extra[@]}" \
  ~hydra.callbacks.report hydra.sweep.dir=$out/digits
"$DAL_REPORT" $out/digits --out $out/report --strategy trainer.objective --reference trainer.objective=cross_entropy
