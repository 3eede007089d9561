"""Leave a half-finished forward when a ``BaseException`` unwinds through it.

The collector and the monitor enter state in a module's forward pre-hook (the
function-interception mode, the stack of running modules, a compile stance) and
leave it in a forward hook registered with ``always_call=True``. torch runs
those hooks only for an ``Exception``: a ``KeyboardInterrupt`` (or
``SystemExit``, ``GeneratorExit``) skips them. A training loop that catches the
interrupt and carries on would then run every later step with the stale state
(a second forward recorded as ``act1#1``, ``act1#2``...).

:class:`ForwardGuard` puts a wrapper in the module's instance ``forward`` for as
long as the hooks are attached; it calls ``on_abort`` when such an exception
passes through, then re-raises it. Invariants:

* The wrapper is a bound method named ``forward``: pickling a watched module
  (``torch.save(model)``) stores it as ``getattr(module, "forward")``, the class
  forward; a ``copy.deepcopy`` (an EMA copy) keeps the function but binds it to
  the copy, which it then passes straight to the copy's class forward. Its
  signature is the original's (Trainer-style code reads
  ``inspect.signature(model.forward)``).
* Removal restores exactly what was there (a class forward or an instance one,
  such as ``torch.compile``'s) and only if the wrapper is still the module's
  forward; guards stacked on one module must be removed in reverse order.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["ForwardGuard"]

_MISSING = object()


class ForwardGuard:
    """Run ``on_abort()`` when a non-``Exception`` ``BaseException`` leaves ``module``'s forward."""

    def __init__(self, module: nn.Module, on_abort: Callable[[], None]) -> None:
        self.module = module
        self._own = module.__dict__.get("forward", _MISSING)
        original = module.forward

        def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
            if self is not module:  # a deepcopy of the watched module keeps this function
                return type(self).forward(self, *args, **kwargs)
            try:
                return original(*args, **kwargs)
            except Exception:
                raise  # always_call hooks run for these
            except BaseException:
                on_abort()
                raise

        forward.__doc__ = getattr(original, "__doc__", None)
        try:  # the bound method drops the first parameter: give it one to drop
            sig = inspect.signature(original)
            first = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
            forward.__signature__ = sig.replace(  # type: ignore[attr-defined]
                parameters=[first, *sig.parameters.values()])
        except (TypeError, ValueError):
            pass
        self._bound = types.MethodType(forward, module)
        module.__dict__["forward"] = self._bound

    def remove(self) -> None:
        """Put back the forward the module had; a no-op when something replaced ours since."""
        d = self.module.__dict__
        if d.get("forward") is not self._bound:
            return
        if self._own is _MISSING:
            del d["forward"]
        else:
            d["forward"] = self._own
