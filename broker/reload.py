"""Keeping the policy in force in step with ``policies/`` (DESIGN §4, §11).

Every ``policy_poll_s`` the watcher reads the folder (bounded, in a thread: see
:mod:`broker.policy.folder`) and compares its fingerprint with the one of the policy in force.
Content decides, never timestamps: a deleted agreement, a file renamed, ``partners.yaml`` put
back from a backup with an old mtime, an edit that keeps the size, all count. A folder that
differs is loaded and checked; a good one replaces the policy in force (partners, agreements and
operators together), a bad one is refused and the last good policy stays. Each outcome is one log
line on ``tearline.broker`` saying which files changed, and a count in
``tearline_policy_reloads_total``. A refused folder is not loaded again until it changes: the
operator is told once, not every round.

The policy loaded and the fingerprint it is known by come from the same read of the folder, so
an edit that lands while a reload runs is never mistaken for one already in force.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from functools import partial
from pathlib import Path

from redis.exceptions import RedisError

from tearline.broker.metrics import POLICY_RELOADS
from tearline.broker.policy.check import check_files, load_files
from tearline.broker.policy.engine import Policy
from tearline.broker.policy.fingerprint import (
    Fingerprint,
    PolicyFiles,
    bounded_list,
    changes,
    fingerprint,
)
from tearline.broker.policy.folder import read_policy_folder
from tearline.broker.policy.governed import is_governed
from tearline.broker.policy.record import Outcome, PolicyReloads, Refusal
from tearline.broker.state import BrokerState
from tearline.clients.protocol.encoding import format_time

log = logging.getLogger("tearline.broker")


async def reload_now(state: BrokerState) -> bool:
    """Load the policy folder again, changed or not; on any problem keep the last good policy
    and say why (the watcher does this by itself when the folder's content changes)."""
    return await reload(state, force=True) is Outcome.APPLIED


def load_initial(folder: Path, now: datetime) -> tuple[Policy, PolicyReloads]:
    """The policy to start with and its record; :class:`PolicyError` if the folder is bad.

    A governed folder is checked here on its own, before Redis is reached; once it is, the
    broker loads it again against its transparency log (``broker.app``), and from then on
    every reload is."""
    files = read_policy_folder(folder)
    return load_files(files, now=now), PolicyReloads(fingerprint(files), loaded_at=now)


def describe(policy: Policy) -> str:
    s = policy.summary()
    return (
        f"scheme {s['policy']}, {s['partners']} partners, {s['agreements']} agreements, "
        f"{s['operators']} operators"
    )


async def reload(state: BrokerState, *, force: bool = False) -> Outcome:
    """Read the folder and load it when it differs from the policy in force (``force``: load
    it whatever it holds). A RedisError means nothing changed: the next round tries again."""
    record = state.reloads
    async with record.lock:
        files = await asyncio.to_thread(read_policy_folder, state.settings.policies_dir)
        folder = fingerprint(files)
        if not force and not record.needs_load(folder):
            if folder == record.fingerprint and record.outstanding:
                record.outstanding = False
                log.info(
                    "policy folder is back to the policy in force (%s); the refused reload no "
                    "longer applies",
                    folder.short,
                )
            return Outcome.UNCHANGED
        return await _load(state, files, folder)


async def _load(state: BrokerState, files: PolicyFiles, folder: Fingerprint) -> Outcome:
    record = state.reloads
    changed = changes(record.fingerprint, folder)
    logged: list[bytes] = []
    if is_governed(files.contents):  # checked against what the log already holds
        await state.log.refresh(state.store)
        logged = list(state.log.documents)
    policy, problems = await asyncio.to_thread(
        partial(check_files, files, logged=logged, now=state.clock())
    )
    if policy is None:
        refusal = Refusal(folder, state.clock(), changed, tuple(str(p) for p in problems))
        record.refuse(refusal)
        POLICY_RELOADS.labels(outcome=Outcome.REFUSED).inc()
        log.error(
            "policy reload refused, keeping the last good policy %s (%s): %s",
            record.fingerprint.short if record.fingerprint else "(unknown)",
            changed,
            bounded_list(refusal.problems, "; "),  # all of them: GET /v1/status, policy check
        )
        return Outcome.REFUSED
    # Inboxes first: a partner the new policy adds can be granted as soon as it is in force.
    await state.store.ensure_inboxes(policy.registry.ids)
    if policy.governance is not None:
        # Published before it is in force: no node is routed by documents it cannot see.
        await state.log.append(state.store, policy.governance.documents)
    state.policy = policy
    record.applied(folder, state.clock())
    POLICY_RELOADS.labels(outcome=Outcome.APPLIED).inc()
    log.info("policy reloaded (%s): %s; fingerprint %s", changed, describe(policy), folder.short)
    return Outcome.APPLIED


def tell_expiry(state: BrokerState) -> None:
    """Say once, as an error, that the signed registry or root in force has expired: from then
    on no agreement is in force (``broker.policy.governed``) until a new version is published,
    and an operator who sees deliveries stop should not have to guess why."""
    governance = state.policy.governance
    if governance is None or state.clock() < governance.expires:
        return
    if state.reloads.expiry_told == governance.expires:
        return
    state.reloads.expiry_told = governance.expires
    log.error(
        "the signed registry in force (version %d) or its root expired at %s: no agreement is "
        "in force and nothing is routed until its holders publish a new version",
        governance.registry.version,
        format_time(governance.expires),
    )


async def watch(state: BrokerState, interval_s: float) -> None:
    """Every ``interval_s``, reload the folder if its content changed; never give up."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await reload(state)
            tell_expiry(state)
        except (RedisError, OSError) as exc:  # Redis away: the folder is loaded again next round
            log.warning("policy reload postponed: %s", exc)
        except Exception:
            # A bug must not end the watching: the policy in force would then never change.
            log.exception("policy reload failed; keeping the policy in force")
