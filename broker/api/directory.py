"""The directory: partners' public keys, the marking scheme, the agreements the caller is in."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from tearline.broker.api.deps import Caller, State
from tearline.broker.api.reports import errors
from tearline.clients.protocol.encoding import b64e

router = APIRouter(prefix="/v1", tags=["directory"])


@router.get(
    "/partners",
    summary="Partners, their public keys, the scheme and the broker's key",
    responses=errors(401, 503),
)
async def partners(state: State, caller: Caller) -> dict[str, Any]:
    policy = state.policy
    scheme = policy.scheme
    return {
        "partners": [p.to_dict() for p in policy.registry],
        "scheme": {
            "policy": scheme.policy,
            "levels": list(scheme.levels),
            "caveats": sorted(scheme.caveats),
            "groups": {g: sorted(m) for g, m in sorted(scheme.groups.items())},
        },
        "broker": {"kid": state.key.kid, "alg": "Ed25519", "public": b64e(state.key.public)},
    }


@router.get(
    "/agreements", summary="The agreements the caller is a party to", responses=errors(401, 503)
)
async def agreements(state: State, caller: Caller) -> dict[str, Any]:
    return {"agreements": [a.to_dict() for a in state.policy.agreements_of(caller.partner)]}
