"""The governance documents in force and the transparency log that holds them (protocol §11).

Partners read these to check the broker instead of trusting it: the documents are the signed
bytes as their signers made them, each with its index in the log; heads are signed by the
broker's key; proofs are RFC 9162's. An agreement's terms go only to its parties: the log holds
a commitment to it (its id, parties and digest), and ``GET /v1/governance`` serves a partner
the root chain, the registry, and the agreements it is party to with their statuses. A broker
whose folder is not governed serves an empty list of documents and its log as it is (empty,
unless it was governed before).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Query

from tearline.broker.api.deps import Caller, State
from tearline.broker.api.reports import errors
from tearline.broker.state import BrokerState
from tearline.clients.errors import InputError
from tearline.clients.governance.documents import parse_agreement, parse_envelope, parse_status
from tearline.clients.protocol.encoding import b64e

router = APIRouter(prefix="/v1", tags=["governance"])

#: Entries per page of GET /v1/log/entries: a registry of a few hundred pq-hybrid partners is
#: a megabyte or two, so a page stays within a few hundred.
MAX_ENTRIES_PER_PAGE: Final = 100


async def _size(state: BrokerState) -> int:
    return await state.log.refresh(state.store)


@router.get(
    "/governance",
    summary="The signed governance documents in force, each with its index in the log",
    responses=errors(401, 503),
)
async def governance(state: State, caller: Caller) -> dict[str, Any]:
    await _size(state)
    governed = state.policy.governance
    documents = []
    for data in governed.documents if governed else ():
        doc_type = parse_envelope(data).doc_type
        if not _may_read(doc_type, data, caller.partner, state):
            continue
        documents.append(
            {
                "type": doc_type,
                "index": state.log.index_of(data),
                "document": b64e(data),
            }
        )
    return {
        "governed": governed is not None,
        "documents": documents,
        "head": state.log.signed_head(state.key, state.clock()),
    }


def _may_read(doc_type: str, data: bytes, partner: str, state: BrokerState) -> bool:
    """Roots and the registry are every partner's; an agreement and its statuses only its
    parties' (DESIGN §4: nobody learns the terms of an agreement it is not in)."""
    if doc_type == "agreement":
        return partner in parse_agreement(data).parties
    if doc_type == "agreement-status":
        agreement = state.policy.agreements.get(parse_status(data).agreement)
        return agreement is not None and partner in agreement.parties
    return True


@router.get("/log/head", summary="The log's signed tree head", responses=errors(401, 503))
async def head(state: State, caller: Caller) -> dict[str, Any]:
    await _size(state)
    return state.log.signed_head(state.key, state.clock())


@router.get(
    "/log/entries",
    summary="The log's leaves (a document's bytes, or an agreement's commitment), from start",
    responses=errors(400, 401, 422, 503),
)
async def entries(
    state: State,
    caller: Caller,
    start: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_ENTRIES_PER_PAGE)] = MAX_ENTRIES_PER_PAGE,
) -> dict[str, Any]:
    size = await _size(state)
    leaves = state.log.leaves[start : min(size, start + limit)]
    return {
        "start": start,
        "tree_size": size,
        "entries": [b64e(leaf) for leaf in leaves],
    }


@router.get(
    "/log/proofs/inclusion",
    summary="RFC 9162 inclusion proof of leaf index in the tree of tree_size leaves",
    responses=errors(400, 401, 422, 503),
)
async def inclusion(
    state: State,
    caller: Caller,
    index: Annotated[int, Query(ge=0)],
    tree_size: Annotated[int, Query(ge=1)],
) -> dict[str, Any]:
    size = await _size(state)
    if not index < tree_size <= size:
        raise InputError(
            f"no leaf {index} in a tree of {tree_size} leaves: the log has {size}",
            code="bad_log_range",
        )
    proof = state.log.inclusion(index, tree_size)
    return {"index": index, "tree_size": tree_size, "path": [b64e(h) for h in proof]}


@router.get(
    "/log/proofs/consistency",
    summary="RFC 9162 consistency proof from the tree of first leaves to that of second",
    responses=errors(400, 401, 422, 503),
)
async def consistency(
    state: State,
    caller: Caller,
    first: Annotated[int, Query(ge=0)],
    second: Annotated[int, Query(ge=0)],
) -> dict[str, Any]:
    size = await _size(state)
    if not first <= second <= size:
        raise InputError(
            f"no consistency proof from {first} to {second} leaves: the log has {size}",
            code="bad_log_range",
        )
    proof = state.log.consistency(first, second)
    return {"first": first, "second": second, "path": [b64e(h) for h in proof]}
