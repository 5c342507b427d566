"""groveflow: train scikit-learn random forests on AWS Step Functions and Lambda."""

from groveflow.errors import GroveflowError

__version__ = "0.1.0"

__all__ = ["GroveflowError", "__version__"]
