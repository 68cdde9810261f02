"""Dataset adapters, one module per dataset (or family of views), each registering itself on import.

Use `load_pairs(name, path)` / `iter_pairs(...)`; `ADAPTERS` lists what is registered.
"""

import importlib
import pkgutil

from rmlab.data.adapters.base import (
    ADAPTERS,
    AdapterSpec,
    LoadReport,
    RowContext,
    adapter,
    get_adapter,
    iter_pairs,
    load_pairs,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ADAPTERS", "AdapterSpec", "LoadReport", "RowContext", "adapter", "get_adapter", "iter_pairs", "load_pairs"]
