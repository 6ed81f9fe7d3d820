"""The paper's numbers (read off its figures and tables; see /shared/paper.md), for the report."""

from __future__ import annotations

# Figure 2: label Pearson correlation at a few p (read off the plot).
FIGURE2 = {0.5: 0.08, 0.9: 0.30, 0.95: 0.44, 1.0: 1.0}
# Figure 3: Shared-Bottom final loss.
FIGURE3 = {0.5: 0.40, 0.9: 0.36, 1.0: 0.29}
# Figure 4: final loss per model.
FIGURE4 = {
    0.5: {"shared-bottom": 0.25, "omoe": 0.145, "mmoe": 0.08},
    0.9: {"shared-bottom": 0.22, "omoe": 0.12, "mmoe": 0.08},
    1.0: {"shared-bottom": 0.20, "omoe": 0.08, "mmoe": 0.07},
}
PARAMETERS = 13_056
# Tables 1 and 2: (main best, main mean, auxiliary of the best run, auxiliary mean).
TABLES = {
    1: {
        "single-task": (0.9398, 0.9337, 0.9933, 0.9922),
        "shared-bottom": (0.9361, 0.9295, 0.9915, 0.9921),
        "l2-constrained": (0.9389, 0.9359, 0.9922, 0.9918),
        "cross-stitch": (0.9406, 0.9361, 0.9917, 0.9922),
        "tensor-factorization": (0.7460, 0.6765, 0.8175, 0.8412),
        "omoe": (0.9387, 0.9319, 0.9928, 0.9923),
        "mmoe": (0.9410, 0.9359, 0.9926, 0.9927),
    },
    2: {
        "single-task": (0.8843, 0.8792, 0.9933, 0.9922),
        "shared-bottom": (0.8836, 0.8813, 0.9927, 0.9917),
        "l2-constrained": (0.8855, 0.8823, 0.9923, 0.9918),
        "cross-stitch": (0.8855, 0.8819, 0.9919, 0.9921),
        "tensor-factorization": (0.7367, 0.7256, 0.7453, 0.7497),
        "omoe": (0.8852, 0.8813, 0.9915, 0.9912),
        "mmoe": (0.8860, 0.8826, 0.9932, 0.9924),
    },
}
# Section 6.4 (private data): the sparse task's gate puts ≈0.78 on one expert.
SPARSE_GATE_MAX = 0.78
