"""``torch.compile`` with an eager fallback: the same maths wherever compiling is impossible."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch


def compiled_or_eager(
    fn: Callable[..., Any], *, fallback: str, **options: Any
) -> Callable[..., Any]:
    """``fn`` through ``torch.compile`` (static shapes, inductor ``options``). Where compiling
    fails (inductor needs a C++ compiler; a GPU, triton) the first call warns, naming
    ``fallback`` (what runs instead, e.g. "training eagerly"), and this call and every later one
    run ``fn`` itself: the same maths. Errors of ``fn`` itself are raised as usual."""
    compiled = torch.compile(fn, dynamic=False, options=options or None)

    def run(*args: Any) -> Any:
        nonlocal compiled
        if compiled is fn:
            return fn(*args)
        try:
            return compiled(*args)
        except Exception as error:
            warnings.warn(
                f"torch.compile failed ({type(error).__name__}: {str(error)[:200]}); {fallback}",
                stacklevel=2,
            )
            compiled = fn
            return fn(*args)

    return run
