"""pytest-loso: leave-one-source-out accuracy gate for small learned VMAF regressors."""

__version__ = "0.1.0"
