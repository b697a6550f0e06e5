"""The scenario table of ``sweep.table``: a CSV whose header names the swept keys and whose
rows are scenarios. Reading only; the keys it may name are the caller's (the config's)."""

from __future__ import annotations

import numpy as np

from agglo.engine.errors import UserError


def read_scenario_table(path: str, sweepable: tuple, string_keys: tuple) -> dict:
    """An explicit scenario table: a CSV with one column per swept key (one of ``sweepable``),
    one row per scenario; columns of ``string_keys`` stay text, the others must be numbers."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise UserError(f"sweep.table = {path!r}: no such file; allowed: a CSV with one column per key") from None
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise UserError(f"sweep.table = {path!r}: cannot be read as CSV ({str(exc).splitlines()[0]})") from None
    if len(frame) == 0 or len(frame.columns) == 0:
        raise UserError(f"{path}: no scenarios; allowed: a header of keys and at least one row")
    for key in frame.columns:
        if key not in sweepable:
            raise UserError(f"{path}: column '{key}' cannot be swept; allowed: {', '.join(sweepable)}")
    out = {}
    for key in frame.columns:
        column = frame[key]
        if key in string_keys:
            out[key] = column.astype(str).to_numpy(dtype=object)
        else:
            values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
            bad = np.isnan(values) & column.notna().to_numpy()
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise UserError(f"{path}, row {k + 2}: column '{key}' has {column.iloc[k]!r}; allowed: a number")
            out[key] = values
    return out


def table_values(cfg) -> dict:
    """The values of ``sweep.table`` (key -> one value per scenario), read and typed."""
    from agglo.engine.config.names import STRING_KEYS
    from agglo.engine.config.schema import SWEEPABLE

    return read_scenario_table(cfg.sweep.table, SWEEPABLE, STRING_KEYS)
