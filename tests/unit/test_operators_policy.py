"""policies/operators.yaml: optional, and sharing no id or key id with the partners."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tearline.broker.policy.load import check_policies

POLICIES = Path(__file__).parents[2] / "policies"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return Path(shutil.copytree(POLICIES, tmp_path / "policies"))


def test_the_shipped_operators_load_into_their_own_registry() -> None:
    policy, problems = check_policies(POLICIES)
    assert problems == []
    assert policy is not None
    assert policy.operators.ids == ["OPS-HQ"]
    assert "OPS-HQ" not in policy.registry


def test_a_policy_folder_without_operators_has_none(folder: Path) -> None:
    (folder / "operators.yaml").unlink()
    policy, problems = check_policies(folder)
    assert problems == []
    assert policy is not None
    assert len(policy.operators) == 0


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        pytest.param({"id": "GBR"}, "operators[0].id", "GBR is also a partner id", id="partner-id"),
        pytest.param(
            {"kid": "GBR-sig-1"}, "operators[0].keys[0].kid", "is a partner's", id="partner-kid"
        ),
    ],
)
def test_an_operator_sharing_a_partners_id_or_key_id_is_refused(
    folder: Path, change: dict[str, str], field: str, says: str
) -> None:
    path = folder / "operators.yaml"
    data = yaml.safe_load(path.read_text())
    if "kid" in change:
        data["operators"][0]["keys"][0]["kid"] = change["kid"]
    else:
        data["operators"][0].update(change)
    path.write_text(yaml.safe_dump(data, width=1 << 16))
    policy, problems = check_policies(folder)
    assert policy is None
    assert [(p.file, p.field) for p in problems if says in p.message] == [("operators.yaml", field)]
