"""The deploy manifest: ``deployments/<chain id>.json``.

``ape run deploy`` writes it; every other part (the API, the operator scripts,
the tests, the benchmarks) reads contract addresses and ABIs from it. It is
plain JSON so that a service without Ape can load it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_DIR_ENV = "AMPHORA_DEPLOYMENTS_DIR"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "deployments"


class ManifestError(Exception):
    """The manifest is missing, unreadable or lacks what was asked for."""


def manifest_dir() -> Path:
    return Path(os.environ.get(MANIFEST_DIR_ENV) or DEFAULT_DIR)


def manifest_path(chain_id: int, directory: Path | None = None) -> Path:
    return (directory or manifest_dir()) / f"{chain_id}.json"


@dataclass
class Manifest:
    chain_id: int
    network: str = ""
    contracts: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def load(cls, path: Path) -> Manifest:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError as err:
            raise ManifestError(f"no deploy manifest at {path}: run `ape run deploy` first") from err
        except json.JSONDecodeError as err:
            raise ManifestError(f"deploy manifest {path} is not valid JSON: {err}") from err
        return cls(
            chain_id=int(data["chain_id"]),
            network=data.get("network", ""),
            contracts=data.get("contracts", {}),
            roles=data.get("roles", {}),
            path=Path(path),
        )

    @classmethod
    def load_or_new(cls, chain_id: int, directory: Path | None = None) -> Manifest:
        path = manifest_path(chain_id, directory)
        if path.exists():
            return cls.load(path)
        return cls(chain_id=chain_id, path=path)

    def contract(self, name: str) -> dict[str, Any]:
        try:
            return self.contracts[name]
        except KeyError as err:
            raise ManifestError(f"the manifest for chain {self.chain_id} records no {name}") from err

    def address(self, name: str) -> str:
        return str(self.contract(name)["address"])

    def abi(self, name: str) -> list[dict[str, Any]]:
        return list(self.contract(name)["abi"])

    def to_json(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "network": self.network,
            "contracts": self.contracts,
            "roles": self.roles,
        }

    def save(self) -> Path:
        if self.path is None:
            self.path = manifest_path(self.chain_id)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        tmp.replace(self.path)
        return self.path
