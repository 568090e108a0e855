#!/usr/bin/env bash
# How the active-iNAS figures of the README's gallery were made (digits, CPU, about 2 minutes on 2
# cores): the _smoke experiment with its own schedule (60, 120, 180, 300 labels), 2 seeds.
# The BADGE penalty figure is scripts/reproduce_badge.sh --smoke's report/penalty_by_arch.png.
set -euo pipefail
# one torch thread per run: CPU results repeat exactly only at the same thread count
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
out=${1:-outputs/gallery}
by='hydra.sweep.subdir=${query.name}/${hydra.job.num}'
dal-run -m +experiment=active_inas_cifar10_smoke query=softmax_response,coreset seed=0,1 ~hydra.callbacks.report \
  hydra.sweep.dir=$out/inas "$by"
dal-run -m +experiment=active_inas_cifar10_smoke search=fixed arch=resnet18,resnet_small \
  query=softmax_response,coreset,random seed=0,1 ~hydra.callbacks.report hydra.sweep.dir=$out/fixed "$by"
dal-report $out/inas/softmax_response $out/fixed/softmax_response --out $out/report/softmax_response
dal-report $out/fixed --reference query=random --out $out/report/fig6b
# active_inas_smoke_curves.png     = report/softmax_response/learning_curves.png
# active_inas_smoke_auc_gain.png   = report/softmax_response/auc_gain.png
# active_inas_smoke_arch_growth.png = inas/softmax_response/0/arch_growth.png
# active_inas_smoke_fig6b.png      = report/fig6b/auc_gain_by_labels.png
