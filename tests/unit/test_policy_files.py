"""Loading ``policies/`` (§4): the shipped folder loads; a broken one is refused naming file,
line and field.

Each bad-folder case copies the shipped folder, breaks exactly one thing and computes the line
it broke from the text it wrote.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tearline.broker.policy.load import Problem, check_policies, load_policies
from tearline.clients.errors import PolicyError
from tearline.clients.policy.engine import Decision
from tearline.clients.protocol.encoding import b64e
from tests import factories as f

POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "policies"
    shutil.copytree(POLICIES, root)
    return root


def edit(root: Path, rel: str, old: str, new: str) -> str:
    """Replace the one occurrence of ``old`` in ``root/rel``; returns the new text."""
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not unique in {rel}"
    text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return text


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """The 1-based line of the ``nth`` line of ``text`` that contains ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) >= nth, f"{needle!r} occurs {len(hits)} times"
    return hits[nth - 1]


@dataclass(frozen=True)
class Where:
    """Where a problem should be reported, and a fragment of its message."""

    file: str
    line: int | None
    field: str | None
    says: str


Breaker = Callable[[Path], Where]


def _agreement_edit(name: str, old: str, new: str, needle: str, field: str, says: str) -> Breaker:
    rel = f"agreements/{name}.yaml"

    def breaker(root: Path) -> Where:
        text = edit(root, rel, old, new)
        return Where(rel, line_of(text, needle), field, says)

    return breaker


def _key_entry(root: Path, kid: str) -> tuple[int, int]:
    """(partner index, key index) of ``kid`` in partners.yaml."""
    data = yaml.safe_load((root / "partners.yaml").read_text(encoding="utf-8"))
    for i, entry in enumerate(data["partners"]):
        for j, key in enumerate(entry["keys"]):
            if key["kid"] == kid:
                return i, j
    raise AssertionError(f"no key {kid} in partners.yaml")


def _public_key_replaced(make: Callable[[str], str], says: str) -> Breaker:
    """Replace the public key of GBR-enc-1 (an X25519 key) with ``make(old)``."""

    def breaker(root: Path) -> Where:
        i, j = _key_entry(root, "GBR-enc-1")
        text = (root / "partners.yaml").read_text(encoding="utf-8")
        start = text.index("kid: GBR-enc-1")
        line_start = text.index("public: ", start)
        old = text[line_start : text.index("\n", line_start)]
        text = edit(root, "partners.yaml", old, f"public: {make(old.split()[1])}")
        line = line_of(text, "kid: GBR-enc-1") + line_of(text[start:], "public: ") - 1
        return Where("partners.yaml", line, f"partners[{i}].keys[{j}].public", says)

    return breaker


def _duplicate_partner_id(root: Path) -> Where:
    text = edit(root, "partners.yaml", "- id: USA\n", "- id: GBR\n")
    index = [p["id"] for p in yaml.safe_load(text)["partners"]].index("GBR", 1)
    line = line_of(text, "- id: GBR", nth=2)
    return Where("partners.yaml", line, f"partners[{index}].id", "duplicate partner id")


def _duplicate_kid(root: Path) -> Where:
    i, j = _key_entry(root, "USA-sig-1")
    text = edit(root, "partners.yaml", "kid: USA-sig-1\n", "kid: GBR-sig-1\n")
    line = line_of(text, "kid: GBR-sig-1", nth=2)
    return Where("partners.yaml", line, f"partners[{i}].keys[{j}].kid", "duplicate key id")


def _duplicate_agreement_id(root: Path) -> Where:
    text = (root / "agreements/fvey-cyber.yaml").read_text(encoding="utf-8")
    (root / "agreements/zz-copy.yaml").write_text(text, encoding="utf-8")
    return Where(
        "agreements/zz-copy.yaml",
        line_of(text, "id: fvey-cyber"),
        "id",
        "duplicate agreement id, also in agreements/fvey-cyber.yaml",
    )


def _file_name_is_not_id(root: Path) -> Where:
    (root / "agreements/gbr-est-maritime.yaml").rename(root / "agreements/gbr-est.yaml")
    text = (root / "agreements/gbr-est.yaml").read_text(encoding="utf-8")
    return Where(
        "agreements/gbr-est.yaml",
        line_of(text, "id: gbr-est-maritime"),
        "id",
        "does not match the file name",
    )


def _scheme_edit(old: str, new: str, needle: str, field: str, says: str) -> Breaker:
    def breaker(root: Path) -> Where:
        text = edit(root, "scheme.yaml", old, new)
        return Where("scheme.yaml", line_of(text, needle), field, says)

    return breaker


def _missing_scheme(root: Path) -> Where:
    (root / "scheme.yaml").unlink()
    return Where("scheme.yaml", None, None, "missing")


def _empty_agreement(root: Path) -> Where:
    (root / "agreements/gbr-est-maritime.yaml").write_text("", encoding="utf-8")
    return Where("agreements/gbr-est-maritime.yaml", 1, None, "the file is empty")


def _duplicate_yaml_key(root: Path) -> Where:
    rel = "agreements/gbr-est-maritime.yaml"
    text = edit(
        root, rel, "topics: [maritime, apt]\n", "topics: [maritime, apt]\nceiling: SECRET\n"
    )
    return Where(rel, line_of(text, "ceiling:", nth=2), "ceiling", "duplicate key 'ceiling'")


def _unknown_field(root: Path) -> Where:
    rel = "agreements/gbr-est-maritime.yaml"
    text = edit(root, rel, "ceiling: CONFIDENTIAL\n", "ceiling: CONFIDENTIAL\ncolour: blue\n")
    return Where(rel, line_of(text, "colour: blue"), "colour", "colour")


def _stray(rel: str, says: str, *, folder: bool = False) -> Breaker:
    """An entry the broker would not read: refused, so nobody believes it is in force."""

    def breaker(root: Path) -> Where:
        if folder:
            (root / rel).mkdir()
        else:
            (root / rel).write_text("id: x\n", encoding="utf-8")
        return Where(rel, None, None, says)

    return breaker


CASES: list[tuple[str, Breaker]] = [
    (
        "unknown_level_in_ceiling",
        _agreement_edit(
            "fvey-cyber",
            "ceiling: SECRET\n",
            "ceiling: COSMIC\n",
            "ceiling: COSMIC",
            "ceiling",
            "unknown classification level COSMIC",
        ),
    ),
    (
        "unknown_level_in_require_pq_from",
        _agreement_edit(
            "fvey-cyber",
            "require_pq_from: SECRET ",
            "require_pq_from: ULTRA ",
            "require_pq_from: ULTRA",
            "require_pq_from",
            "unknown classification level ULTRA",
        ),
    ),
    (
        "unknown_level_in_clearance",
        _agreement_edit(
            "fvey-cyber",
            "CAN: {clearance: SECRET,",
            "CAN: {clearance: TOP,",
            "CAN: {clearance: TOP,",
            "parties.CAN.clearance",
            "unknown classification level TOP",
        ),
    ),
    (
        "unknown_caveat_in_parties",
        _agreement_edit(
            "fvey-cyber",
            "CAN: {clearance: SECRET, caveats: [CYBER-OPS]}",
            "CAN: {clearance: SECRET, caveats: [ORCON]}",
            "ORCON",
            "parties.CAN.caveats",
            "unknown caveat ORCON",
        ),
    ),
    (
        "unknown_partner_in_agreement",
        _agreement_edit(
            "gbr-est-maritime",
            "  EST: {caveats: [CYBER-OPS]}\n",
            "  EST: {caveats: [CYBER-OPS]}\n  JPN: {}\n",
            "JPN: {}",
            "parties.JPN",
            "unknown partner JPN",
        ),
    ),
    (
        "unknown_partner_in_scheme_group",
        _scheme_edit(
            "FVEY: [AUS, CAN, GBR, NZL, USA]",
            "FVEY: [AUS, CAN, GBR, JPN, NZL, USA]",
            "JPN",
            "groups.FVEY",
            "unknown partner JPN in group FVEY",
        ),
    ),
    (
        "group_named_like_a_partner",
        _scheme_edit(
            "  FVEY: [AUS, CAN, GBR, NZL, USA]\n",
            "  FVEY: [AUS, CAN, GBR, NZL, USA]\n  GBR: [USA, CAN]\n",
            "GBR: [USA, CAN]",
            "groups.GBR",
            "group GBR has the same name as a partner",
        ),
    ),
    ("duplicate_partner_id", _duplicate_partner_id),
    ("duplicate_kid", _duplicate_kid),
    ("duplicate_agreement_id", _duplicate_agreement_id),
    ("file_name_is_not_the_agreement_id", _file_name_is_not_id),
    ("duplicate_yaml_key", _duplicate_yaml_key),
    ("unknown_field", _unknown_field),
    (
        "clearance_above_ceiling",
        _agreement_edit(
            "gbr-est-maritime",
            "EST: {caveats: [CYBER-OPS]}",
            "EST: {clearance: SECRET, caveats: [CYBER-OPS]}",
            "EST: {clearance: SECRET",
            "parties.EST.clearance",
            "clearance SECRET is above the agreement's ceiling CONFIDENTIAL",
        ),
    ),
    (
        "valid_until_before_valid_from",
        _agreement_edit(
            "gbr-est-maritime",
            "valid_until: 2029-03-01T00:00:00Z",
            "valid_until: 2026-02-01T00:00:00Z",
            "valid_until:",
            "valid_until",
            "valid_until must be later than valid_from",
        ),
    ),
    (
        "valid_until_equal_to_valid_from",
        _agreement_edit(
            "gbr-est-maritime",
            "valid_until: 2029-03-01T00:00:00Z",
            "valid_until: 2026-03-01T00:00:00Z",
            "valid_until:",
            "valid_until",
            "valid_until must be later than valid_from",
        ),
    ),
    (
        "public_key_not_base64url_alphabet",
        _public_key_replaced(lambda old: old[:-4] + "+/+/", "does not match"),
    ),
    (
        "public_key_bad_base64url",
        _public_key_replaced(lambda old: old + "AB", "must be unpadded base64url"),
    ),
    (
        "public_key_wrong_length",
        _public_key_replaced(lambda old: b64e(bytes(31)), "must be 32 bytes for X25519"),
    ),
    (
        "invalid_yaml_syntax",
        _agreement_edit(
            "gbr-est-maritime",
            "title: UK-Estonia bilateral",
            "title: UK-Estonia: bilateral",
            "title:",
            "",  # a syntax error has no field; replaced by None below
            "not valid YAML",
        ),
    ),
    (
        "impossible_date_in_valid_from",
        _agreement_edit(
            "gbr-est-maritime",
            "valid_from: 2026-03-01T00:00:00Z",
            "valid_from: 2026-13-01T00:00:00Z",
            "valid_from:",
            "valid_from",
            "month must be in 1..12",
        ),
    ),
    (
        "impossible_date_in_valid_until",
        _agreement_edit(
            "gbr-est-maritime",
            "valid_until: 2029-03-01T00:00:00Z",
            "valid_until: 2029-13-01T00:00:00Z",
            "valid_until:",
            "valid_until",
            "month must be in 1..12",
        ),
    ),
    ("empty_agreement_file", _empty_agreement),
    ("missing_scheme_yaml", _missing_scheme),
    ("agreement_named_yml", _stray("agreements/x.yml", "rename it agreements/x.yaml")),
    ("notes_among_agreements", _stray("agreements/notes.txt", "holds only scheme.yaml")),
    ("partners_named_yml", _stray("partners.yml", "did you mean partners.yaml?")),
    ("stray_folder", _stray("agreements/old", "a folder the broker does not read", folder=True)),
]


def _expected(where: Where) -> tuple[str, int | None, str | None]:
    return (where.file, where.line, where.field or None)


def _matching(problems: list[Problem], where: Where) -> list[Problem]:
    return [p for p in problems if p.file == where.file and where.says in p.message]


def test_shipped_policy_folder_loads_without_problems() -> None:
    policy, problems = check_policies(POLICIES)
    assert problems == []
    assert policy is not None
    assert policy.scheme.policy == "TEARLINE-DEMO"
    assert {"GBR", "USA", "EST", "FIN", "CERT-EU"} <= set(policy.registry.ids)
    assert set(policy.agreements) == {p.stem for p in (POLICIES / "agreements").glob("*.yaml")}


def test_copied_policy_folder_loads_like_the_shipped_one(folder: Path) -> None:
    policy = load_policies(folder)
    assert policy.summary() == load_policies(POLICIES).summary()


@pytest.mark.parametrize("breaker", [pytest.param(b, id=name) for name, b in CASES])
def test_broken_policy_folder_is_refused_naming_the_file_and_the_problem(
    folder: Path, breaker: Breaker
) -> None:
    where = breaker(folder)
    policy, problems = check_policies(folder)
    assert policy is None
    assert _matching(problems, where), [str(p) for p in problems]


@pytest.mark.parametrize(
    "breaker",
    [pytest.param(b, id=name) for name, b in CASES],
)
def test_broken_policy_folder_problem_names_the_line_and_the_field(
    folder: Path, breaker: Breaker
) -> None:
    where = breaker(folder)
    _, problems = check_policies(folder)
    found = [(p.file, p.line, p.field) for p in _matching(problems, where)]
    assert _expected(where) in found, [str(p) for p in problems]


@pytest.mark.parametrize(
    "breaker",
    [
        pytest.param(b, id=name)
        for name, b in CASES
        if name in ("duplicate_yaml_key", "invalid_yaml_syntax", "empty_agreement_file")
    ],
)
def test_yaml_errors_state_their_location_once(folder: Path, breaker: Breaker) -> None:
    where = breaker(folder)
    _, problems = check_policies(folder)
    (problem,) = _matching(problems, where)
    assert str(problem).count(where.file) == 1, str(problem)
    assert not problem.message.startswith(where.file)


def test_every_problem_in_every_file_is_reported_in_one_pass(folder: Path) -> None:
    wheres = [dict(CASES)["unknown_caveat_in_parties"](folder)]
    wheres.append(
        _agreement_edit(
            "gbr-est-maritime",
            "ceiling: CONFIDENTIAL",
            "ceiling: COSMIC",
            "ceiling:",
            "ceiling",
            "unknown classification level COSMIC",
        )(folder)
    )
    wheres.append(
        _scheme_edit(
            "NORDIC-BALTIC: [EST, FIN, LVA]",
            "NORDIC-BALTIC: [EST, FIN, LVA, ISL]",
            "ISL",
            "groups.NORDIC-BALTIC",
            "unknown partner ISL",
        )(folder)
    )
    _, problems = check_policies(folder)
    for where in wheres:
        found = [(p.file, p.line, p.field) for p in _matching(problems, where)]
        assert _expected(where) in found, [str(p) for p in problems]


def test_one_malformed_key_is_reported_once(folder: Path) -> None:
    _public_key_replaced(lambda old: old + "AB", "base64url")(folder)
    _, problems = check_policies(folder)
    assert [p.file for p in problems] == ["partners.yaml"], [str(p) for p in problems]


def test_load_policies_raises_policy_error_naming_file_line_and_field(folder: Path) -> None:
    text = edit(folder, "agreements/fvey-cyber.yaml", "ceiling: SECRET\n", "ceiling: COSMIC\n")
    line = line_of(text, "ceiling: COSMIC")
    with pytest.raises(PolicyError) as excinfo:
        load_policies(folder)
    exc = excinfo.value
    assert (exc.file, exc.line, exc.field) == ("agreements/fvey-cyber.yaml", line, "ceiling")
    assert f"agreements/fvey-cyber.yaml:{line}" in str(exc)
    assert "COSMIC" in str(exc)
    assert exc.code == "invalid_policy"


def test_load_policies_lists_every_problem_in_its_details(folder: Path) -> None:
    edit(folder, "agreements/fvey-cyber.yaml", "ceiling: SECRET\n", "ceiling: COSMIC\n")
    edit(folder, "scheme.yaml", "FVEY: [AUS,", "FVEY: [JPN, AUS,")
    with pytest.raises(PolicyError) as excinfo:
        load_policies(folder)
    details = excinfo.value.details
    assert isinstance(details, list)
    assert any("COSMIC" in d for d in details)
    assert any("JPN" in d for d in details)


def test_editor_droppings_are_ignored(folder: Path) -> None:
    for name in (".fvey-cyber.yaml.swp", "fvey-cyber.yaml~", "#fvey-cyber.yaml#", ".#x.yaml"):
        (folder / "agreements" / name).write_text("not: [valid", encoding="utf-8")
    (folder / ".partners.yaml.Xy12Ab").write_text("an rsync temporary", encoding="utf-8")
    policy, problems = check_policies(folder)
    assert problems == []
    assert policy is not None
    assert set(policy.agreements) == {p.stem for p in (POLICIES / "agreements").glob("*.yaml")}


def test_missing_policy_folder_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    policy, problems = check_policies(tmp_path / "nowhere")
    assert policy is None
    assert len(problems) == 1
    assert "does not exist" in problems[0].message


@pytest.mark.parametrize("pid", ["NO", "ON", "OFF", "YES"])
def test_yaml_1_1_boolean_words_stay_partner_ids(folder: Path, pid: str) -> None:
    """The Norway problem: ``NO`` (unquoted) must stay the string "NO" everywhere."""
    entry = f.identity(pid, "classic").public_entry(name=f"Partner {pid}")
    item = yaml.safe_dump([entry], sort_keys=False, width=1 << 16)
    item = item.replace(f"id: '{pid}'", f"id: {pid}")
    assert f"- id: {pid}\n" in item  # written unquoted, as an operator would
    with (folder / "partners.yaml").open("a", encoding="utf-8") as out:
        out.write(item)
    edit(folder, "scheme.yaml", "NORDIC-BALTIC: [EST, FIN, LVA]", f"NB: [EST, {pid}]")
    edit(
        folder,
        "agreements/gbr-est-maritime.yaml",
        "  GBR: {}\n",
        f"  GBR: {{}}\n  {pid}: {{}}\n",
    )
    policy = load_policies(folder)
    assert pid in policy.registry
    assert policy.scheme.groups["NB"] == frozenset({"EST", pid})
    assert pid in policy.agreements["gbr-est-maritime"].parties
    lbl = f.label("RESTRICTED", ["NB"], topics=["maritime"])
    decisions = policy.decide(lbl, "GBR", "classic", f.NOW)
    assert decisions[pid] == Decision(pid, agreement="gbr-est-maritime")


def test_yaml_timestamps_stay_strings_for_the_schema(folder: Path) -> None:
    """A date without a time is not silently read as a datetime: the schema refuses it."""
    text = edit(
        folder,
        "agreements/gbr-est-maritime.yaml",
        "valid_from: 2026-03-01T00:00:00Z",
        "valid_from: 2026-03-01",
    )
    _, problems = check_policies(folder)
    where = ("agreements/gbr-est-maritime.yaml", line_of(text, "valid_from:"), "valid_from")
    assert where in [(p.file, p.line, p.field) for p in problems], [str(p) for p in problems]
