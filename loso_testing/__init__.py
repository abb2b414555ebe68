"""Support code for the tests, the benchmarks and ``scripts/build_example.py``; not part of the plugin.

Not shipped in the wheel (``pyproject.toml`` packages only ``pytest_loso*``). It is imported
from the repository root: the tests find it because the root ``conftest.py`` puts the root on
``sys.path`` (and ``python -m pytest`` from the root does too); ``benchmarks/*.py`` and
``scripts/build_example.py`` insert the root themselves.
"""
