"""Override files (``agglo run --params FILE.yaml``, as ``agglo calibrate --out`` writes
them): a YAML mapping of config keys, read as dotted overrides before the command line's."""

from __future__ import annotations

from agglo.engine.errors import UserError


def _flatten(prefix: str, node, out: list) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    elif node is None:
        out.append(f"{prefix}=null")
    elif isinstance(node, list):
        out.append(f"{prefix}=[{','.join(map(str, node))}]")
    else:
        out.append(f"{prefix}={node}")


def with_params(files: list, overrides: list) -> list:
    """Override files as dotted overrides, before the command line's (which win)."""
    from agglo.engine.config.compose import resolve

    from_files = []
    for path in files:
        try:
            import yaml

            with open(path, encoding="utf-8") as fh:
                node = yaml.safe_load(fh)
        except OSError as exc:
            raise UserError(
                f"--params {path!r}: cannot be read ({exc.strerror}); allowed: an existing YAML file"
            ) from None
        except UnicodeDecodeError as exc:
            raise UserError(
                f"--params {path!r}: not UTF-8 (it holds byte 0x{exc.object[exc.start]:02x}, which UTF-8 does not allow there); "
                "allowed: a UTF-8 YAML mapping"
            ) from None
        except yaml.YAMLError as exc:
            raise UserError(
                f"--params {path!r}: not YAML ({str(exc).splitlines()[0]}); allowed: a YAML mapping"
            ) from None
        if not isinstance(node, dict):
            raise UserError(f"--params {path!r}: not a mapping; allowed: a YAML mapping of config keys")
        mine = []
        _flatten("", node, mine)
        try:
            resolve(mine)
        except UserError as err:
            raise UserError(f"--params {path!r}: {err}") from None
        from_files += mine
    return from_files + list(overrides)
