"""Analyses behind the papers' figures (docs/claims.md): `cnnbench analyze <name>`.

- `layer_responses` — He et al. 2015 Fig. 7: the std of every 3×3 conv's response (after BN, before the
  nonlinearity or the addition) on test images, in layer order and sorted.
- `degradation` — He et al. 2015 Fig. 1/6: training (thin) and test (bold) error vs iterations of a sweep.

Shared by the analyses and `cnnbench report`: `metrics` (the one metrics.csv reader), `runs` (a run's overrides,
seed and label; the settings that differ between runs) and `report_plots` (the report's figures).
"""
