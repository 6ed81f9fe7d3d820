"""mmoe: multi-task learning with Multi-gate Mixture-of-Experts (Ma et al., KDD 2018) and the
models the paper compares it with, behind one interface."""

from mmoe.data.dataset import InputSpec, MultiTaskData, Split, Task
from mmoe.errors import MmoeError

__version__ = "0.1.0"

__all__ = ["InputSpec", "MmoeError", "MultiTaskData", "Split", "Task", "__version__"]
