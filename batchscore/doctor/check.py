"""What a doctor check reports, and how it imports the packages it looks at."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

OK, WARN, FAIL = "OK", "WARN", "FAIL"


@dataclass(frozen=True)
class Check:
    """One line of the report: the check's name, OK/WARN/FAIL, what was found, and the fix when not OK."""

    name: str
    status: str
    detail: str
    fix: str = ""

def try_import(name: str) -> tuple[object | None, str]:
    """The module, or None and why: not installed, or installed but broken (missing CUDA libraries...)."""
    try:
        return importlib.import_module(name), ""
    except ModuleNotFoundError as exc:
        return None, "not installed" if exc.name == name.split(".")[0] else f"broken: {exc}"
    except Exception as exc:  # a broken install raises OSError/RuntimeError from its native part
        return None, f"broken: {type(exc).__name__}: {exc}"
