"""The broker's policy: the pure releasability engine (:mod:`clients.policy.engine`, which
partner nodes run too) with what only the broker holds: the operators who may read its audit
trail, and in a governed folder the signed documents in force and those that are not."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tearline.clients.policy import engine
from tearline.clients.policy.agreement import Agreement
from tearline.clients.protocol.identity import Registry
from tearline.clients.protocol.label import Scheme

if TYPE_CHECKING:  # the governance core loads with a governed folder only (broker.policy.check)
    from tearline.broker.policy.governed import Governed


class Policy(engine.Policy):
    def __init__(
        self,
        scheme: Scheme,
        registry: Registry,
        agreements: Iterable[Agreement],
        operators: Registry | None = None,
        governance: Governed | None = None,
    ):
        super().__init__(scheme, registry, agreements)
        # In a governed folder: the signed documents in force and those that are not.
        self.governance = governance
        self.operators = operators if operators is not None else Registry([])  # audit readers

    def summary(self) -> dict[str, Any]:
        return {
            "policy": self.scheme.policy,
            "partners": len(self.registry),
            "agreements": len(self.agreements),
            "operators": len(self.operators),
            "governed": self.governance is not None,
        }
