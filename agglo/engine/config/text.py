"""The configuration as a run records it: its YAML (the cube's ``config``), the keys that
decide results (``result_config``, what resume compares), and which keys differ."""

from __future__ import annotations

from omegaconf import OmegaConf

from agglo.engine.config.names import NOT_RESULTS
from agglo.engine.config.schema import AggloConfig


def _node(cfg):
    """An OmegaConf node of a typed config (``store.path`` as the user gave it: null when the
    store is named after the data) or of an OmegaConf one."""
    if not isinstance(cfg, AggloConfig):
        return cfg
    node = OmegaConf.structured(cfg)
    node.store.path = cfg.store.given_path
    return node


def to_yaml(cfg) -> str:
    return OmegaConf.to_yaml(_node(cfg), resolve=True)


def result_keys(cfg) -> dict:
    """The configuration that determines the results (store and executor left out)."""
    plain = OmegaConf.to_container(_node(cfg), resolve=True)
    for key in NOT_RESULTS:
        plain.pop(key, None)
    return plain


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    out: list[str] = []
    for key in sorted(set(a) | set(b), key=str):
        name = f"{prefix}{key}"
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if isinstance(va, dict) and isinstance(vb, dict) and not (prefix == "sweep." and key == "grid"):
            out.extend(diff_keys(va, vb, name + "."))
        elif va != vb:
            out.append(name)
    return out
