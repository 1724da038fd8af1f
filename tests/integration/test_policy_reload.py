"""Editing policies/ in a running broker: a good edit takes effect, a bad one is refused."""

from __future__ import annotations

import httpx

from clients import Label
from clients.partner import AsyncPartner
from tests.integration.conftest import RunningBroker, me

LABEL = Label("RESTRICTED", ["USA"], "AMBER")


async def test_a_broken_policy_edit_keeps_the_last_good_policy_and_readyz_says_why(
    broker: RunningBroker,
) -> None:
    before = broker.state.policy
    (broker.policies / "agreements" / "gbr-usa.yaml").write_text("id: gbr-usa\nceiling: COSMIC\n")

    assert broker.run(broker.state.reload_policies()) is False
    assert broker.state.policy is before
    async with httpx.AsyncClient() as client:
        ready = (await client.get(f"{broker.url}/readyz")).json()
    assert ready["ready"] is True
    assert "agreements/gbr-usa.yaml" in ready["checks"]["policy_reload_error"]
    async with AsyncPartner(broker.url, me("GBR")) as gbr:  # still routing under the old policy
        receipt = await gbr.publish({"type": "bundle", "objects": []}, LABEL)
    assert [r.partner for r in receipt.recipients] == ["USA"]


async def test_a_good_policy_edit_takes_effect_for_the_next_report(broker: RunningBroker) -> None:
    broker.change_policies(agreements={})  # every agreement ended
    async with AsyncPartner(broker.url, me("GBR")) as gbr:
        decisions = await gbr.preview(LABEL)
    assert decisions["USA"].reason == "NO_AGREEMENT"
    assert broker.state.policy_error is None
