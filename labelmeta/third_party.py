"""``higher``, imported without its own compile-time warnings.

``make`` installs the packages without byte-compiling them (half the install's time), so a package's
sources are compiled on their first import. higher 0.2.1's hold invalid escape sequences and ``is``
comparisons with literals, whose warnings are about its code, not the user's: they are silenced for
its modules alone, here, where labelmeta first imports it.
"""
from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=SyntaxWarning, module=r".*higher")
    warnings.filterwarnings("ignore", message="invalid escape sequence", category=DeprecationWarning, module=r".*higher")
    import higher

__all__ = ["higher"]
