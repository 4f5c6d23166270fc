"""Derandomized Hypothesis runs that take the same steps whatever ran before."""

from __future__ import annotations

from hypothesis.internal.conjecture import providers


def without_local_constants(monkeypatch) -> None:
    """Hypothesis mixes into its draws the literals of every local module
    imported so far (``_get_local_constants``, cached in ``CONSTANTS_CACHE``),
    and which modules those are depends on the tests that ran earlier. The
    stateful machines call this (with pytest's ``monkeypatch``, which undoes it
    after the test) so their step sequence, and so their coverage floors, does
    not move with test order. It patches a private function: if Hypothesis
    renames it, ``setattr`` raises instead of failing silently."""
    monkeypatch.setattr(providers, "_get_local_constants", providers.Constants)
    providers.CONSTANTS_CACHE.cache.clear()


def forget_cached_constants() -> None:
    """After such a run: the empty constants it cached must not follow later tests."""
    providers.CONSTANTS_CACHE.cache.clear()
