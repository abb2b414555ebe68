"""The gate's ini keys, registered whether or not the gate itself is loaded.

An entry point of its own (``loso_ini``): with ``-p no:loso`` an ini file that configures
the gate must not warn "Unknown config option" for each key, nor fail ``--strict-config``.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from .options import add_ini, add_unprefixed_data_root


def pytest_addoption(parser: pytest.Parser) -> None:
    add_ini(parser)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser) -> Generator[None, object, object]:
    result = yield
    add_unprefixed_data_root(early_config, parser, option=False)  # the ini key data_root, where free
    return result
