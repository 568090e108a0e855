#!/usr/bin/env bash
# Active-iNAS (Geifman & El-Yaniv, NeurIPS 2019), Figures 2-6, for each data set:
#   sweeps   inas/<query>/N   active-iNAS with softmax response, MC-dropout and core-set
#            fixed/<query>/N  the fixed baselines ResNet-18 and A(B,1,2) with the same queries,
#                             and with random sampling (passive learning): fixed/random/N
#   reports  report/<query>   Figs. 2-4: one per query, active-iNAS against the fixed baselines
#                             (learning curves; AUC-gain over fixed ResNet-18)
#            report/inas      Fig. 5: active-iNAS across the query functions
#            report/fig6b     Fig. 6b: AUC-gain of each query over passive learning, per fixed
#                             architecture, as the budget grows (auc_gain_by_labels.png)
#            each active-iNAS run's arch_growth.png is Fig. 6a.
#            inas/report, fixed/report: each sweep's own end-of-sweep report (not in --smoke)
# 3 seeds.
#
#   scripts/reproduce_active_inas.sh [--smoke] [cifar10 cifar100 svhn]
#
# --smoke: the same sweeps on digits, CPU-sized (2 seeds, softmax response, tiny training), in minutes,
# into outputs/reproduce/smoke/active_inas (cifar10's protocol unless data sets are named).
set -euo pipefail
DAL_RUN=${DAL_RUN:-dal-run}; DAL_REPORT=${DAL_REPORT:-dal-report}
smoke=0; datasets=()
for arg in "$@"; do
  case $arg in
    --smoke) smoke=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    cifar10|cifar100|svhn) datasets+=("$arg") ;;
    *) echo "reproduce_active_inas.sh: $arg: unknown argument; accepted: --smoke, cifar10, cifar100, svhn, --help" >&2
       exit 2 ;;
  esac
done
# the smoke runs go to a folder of their own: the full sweeps refuse a folder of runs of another config
out=${OUT:-outputs/reproduce/active_inas}; [ $smoke = 1 ] && out=${OUT:-outputs/reproduce/smoke/active_inas}
queries=softmax_response,mc_dropout,coreset; seeds=0,1,2; extra=()
[ ${#datasets[@]} -gt 0 ] || { [ $smoke = 1 ] && datasets=(cifar10) || datasets=(cifar10 cifar100 svhn); }
if [ $smoke = 1 ]; then
  queries=softmax_response; seeds=0,1
  extra=(budget.initial=60 "budget.batch={0:60}" budget.max_labels=120 search.epochs=2 "search.lr_milestones=[1]" ~hydra.callbacks.report)
fi
by_query='hydra.sweep.subdir=${query.name}/${hydra.job.num}'  # one folder of runs per query
for ds in "${datasets[@]}"; do
  exp=active_inas_${ds}; [ $smoke = 1 ] && exp=${exp}_smoke
  root=$out/$ds
  "$DAL_RUN" -m +experiment=$exp query=$queries seed=$seeds "${extra[@]}" hydra.sweep.dir=$root/inas "$by_query"
  "$DAL_RUN" -m +experiment=$exp search=fixed arch=resnet18,resnet_small query=$queries,random seed=$seeds \
    "${extra[@]}" hydra.sweep.dir=$root/fixed "$by_query"
  for q in ${queries//,/ }; do
    "$DAL_REPORT" $root/inas/$q $root/fixed/$q --out $root/report/$q
  done
  "$DAL_REPORT" $root/inas --out $root/report/inas
  "$DAL_REPORT" $root/fixed --reference query=random --out $root/report/fig6b
done
