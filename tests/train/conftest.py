"""Fixtures of the engine tests."""

import _tiny
import pytest


@pytest.fixture
def tiny(monkeypatch):
    """The engine builds the tiny in-memory dataset and model (:mod:`_tiny`)."""
    _tiny.patch(monkeypatch)
