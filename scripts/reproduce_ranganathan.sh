#!/usr/bin/env bash
# Ranganathan et al. (ICIP 2017): entropy sampling with the joint objective (cross-entropy +
# lambda * mean entropy of unlabeled predictions) against plain cross-entropy, over 5 seeds.
#
#   scripts/reproduce_ranganathan.sh [--smoke]
set -euo pipefail
DAL_RUN=${DAL_RUN:-dal-run}; DAL_REPORT=${DAL_REPORT:-dal-report}
out=${OUT:-outputs/reproduce/ranganathan}
seeds=0,1,2,3,4; extra=()
for arg in "$@"; do
  case $arg in
    --smoke) seeds=0,1; extra=(budget.max_labels=300 trainer.epochs=10); out=${OUT:-outputs/reproduce/smoke/ranganathan} ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "reproduce_ranganathan.sh: $arg: unknown argument; accepted: --smoke, --help" >&2; exit 2 ;;
  esac
done
"$DAL_RUN" -m +experiment=ranganathan_digits trainer.objective=joint_entropy,cross_entropy seed=$seeds "${extra[@]}" \
  ~hydra.callbacks.report hydra.sweep.dir=$out/digits
"$DAL_REPORT" $out/digits --out $out/report --strategy trainer.objective --reference trainer.objective=cross_entropy
