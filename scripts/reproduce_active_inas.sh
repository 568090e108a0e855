#!/usr/bin/env bash
# Active-iNAS (Geifman & El-Yaniv, NeurIPS 2019), Figures 2-6: for each data set, active-iNAS with
# softmax response, MC-dropout and core-set, and the fixed baselines ResNet-18 and A(B,1,2), over
# 3 seeds; then one report: learning curves (Figs. 2-5), AUC-gain over fixed ResNet-18 (Fig. 6b);
# each run's arch_growth.png is Fig. 6a.
#
#   scripts/reproduce_active_inas.sh [--smoke] [cifar10 cifar100 svhn]
#
# --smoke: the same sweeps on digits, CPU-sized (2 seeds, softmax response, tiny training), in minutes.
set -euo pipefail
DAL_RUN=${DAL_RUN:-dal-run}; DAL_REPORT=${DAL_REPORT:-dal-report}
smoke=0; [ "${1:-}" = "--smoke" ] && { smoke=1; shift; }
datasets=("$@"); [ ${#datasets[@]} -gt 0 ] || datasets=(cifar10 cifar100 svhn)
out=${OUT:-outputs/reproduce/active_inas}
queries=softmax_response,mc_dropout,coreset; seeds=0,1,2; extra=()
if [ $smoke = 1 ]; then
  [ $# -gt 0 ] || datasets=(cifar10)
  queries=softmax_response; seeds=0,1
  extra=(budget.initial=60 "budget.batch={0:60}" budget.max_labels=120 search.epochs=2 "search.lr_milestones=[1]" ~hydra.callbacks.report)
fi
for ds in "${datasets[@]}"; do
  exp=active_inas_${ds}; [ $smoke = 1 ] && exp=${exp}_smoke
  root=$out/$ds
  "$DAL_RUN" -m +experiment=$exp query=$queries seed=$seeds "${extra[@]}" \
    hydra.sweep.dir=$root/inas
  "$DAL_RUN" -m +experiment=$exp search=fixed arch=resnet18,resnet_small query=$queries seed=$seeds "${extra[@]}" \
    hydra.sweep.dir=$root/fixed
  "$DAL_REPORT" $root/inas $root/fixed --out $root/report
done
