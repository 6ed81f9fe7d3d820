"""The paper's numbers (read off its figures and tables; see /shared/paper.md), for the report."""

from __future__ import annotations

# Figure 2: label Pearson correlation at a few p (read off the plot).
FIGURE2 = {0.5: 0.08, 0.9: 0.30, 0.95: 0.44, 1.0: 1.0}
# Figure 3: Shared-Bottom final loss.
FIGURE3 = {0.5: 0.40, 0.9: 0.36, 1.0: 0.29}
# Figure 4: final loss per model.
FIGURE4 = {0.5: {"shared-bottom": 0.25, "omoe": 0.145, "mmoe": 0.08},
           0.9: {"shared-bottom": 0.22, "omoe": 0.12, "mmoe": 0.08},
           1.0: {"shared-bottom": 0.20, "omoe": 0.08, "mmoe": 0.07}}
PARAMETERS = 13_056
# Tables 1 and 2: (main best, main mean, auxiliary of the best run, auxiliary mean).
TABLES = {
    1: {"single-task": (.9398, .9337, .9933, .9922), "shared-bottom": (.9361, .9295, .9915, .9921),
        "l2-constrained": (.9389, .9359, .9922, .9918), "cross-stitch": (.9406, .9361, .9917, .9922),
        "tensor-factorization": (.7460, .6765, .8175, .8412), "omoe": (.9387, .9319, .9928, .9923),
        "mmoe": (.9410, .9359, .9926, .9927)},
    2: {"single-task": (.8843, .8792, .9933, .9922), "shared-bottom": (.8836, .8813, .9927, .9917),
        "l2-constrained": (.8855, .8823, .9923, .9918), "cross-stitch": (.8855, .8819, .9919, .9921),
        "tensor-factorization": (.7367, .7256, .7453, .7497), "omoe": (.8852, .8813, .9915, .9912),
        "mmoe": (.8860, .8826, .9932, .9924)},
}
# Section 6.4 (private data): the sparse task's gate puts ≈0.78 on one expert.
SPARSE_GATE_MAX = 0.78
