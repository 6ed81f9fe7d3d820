"""mmoe: multi-task learning with Multi-gate Mixture-of-Experts (Ma et al., KDD 2018) and the
models the paper compares it with, behind one interface.

    from mmoe import MultiTaskEstimator   # fit, predict, score, gates, save / load, export
"""

from typing import TYPE_CHECKING, Any

from mmoe.data.dataset import InputSpec, MultiTaskData, Split, Task
from mmoe.errors import MmoeError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mmoe.estimator import MultiTaskEstimator


def __getattr__(name: str) -> Any:
    # Imported on first use: `import mmoe.data` (every worker process, the CLI's start) need not
    # load the estimator's dependencies (scikit-learn, the exporter, the predict path).
    if name == "MultiTaskEstimator":
        from mmoe.estimator import MultiTaskEstimator

        return MultiTaskEstimator
    raise AttributeError(f"module 'mmoe' has no attribute {name!r}")


__all__ = ["InputSpec", "MmoeError", "MultiTaskData", "MultiTaskEstimator", "Split", "Task", "__version__"]
