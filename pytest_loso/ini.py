"""The gate's ini keys, registered whether or not the gate itself is loaded.

An entry point of its own (``loso_ini``): with ``-p no:loso`` an ini file that configures
the gate must not warn "Unknown config option" for each key, nor fail ``--strict-config``.
"""

from __future__ import annotations

import pytest

from .options import add_ini


def pytest_addoption(parser: pytest.Parser) -> None:
    add_ini(parser)
