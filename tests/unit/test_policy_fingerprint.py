"""The policy folder's fingerprint and layout rule (pure), and the bounded reader on a real disk.

The fingerprint decides when the broker reloads: it must change with the content of what the
broker reads and with nothing else (mtimes, sizes, editor droppings).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tearline.broker.policy.fingerprint import (
    MAX_DIR_ENTRIES,
    MAX_FILE_BYTES,
    Action,
    Changes,
    Fingerprint,
    PolicyFiles,
    changes,
    classify,
    fingerprint,
    refusal,
)
from tearline.broker.policy.folder import read_policy_folder
from tearline.broker.policy.record import PolicyReloads, Refusal

POLICIES = Path(__file__).resolve().parents[2] / "policies"
FOLDER = {
    "scheme.yaml": b"policy: X\n",
    "partners.yaml": b"partners: []\n",
    "agreements/a.yaml": b"id: a\n",
}


def of(contents: dict[str, bytes], unread: dict[str, str] | None = None) -> Fingerprint:
    return fingerprint(PolicyFiles(contents, unread or {}))


# --- the fingerprint (pure) -------------------------------------------------------------------


def test_the_fingerprint_is_the_set_of_files_and_the_sha256_of_each() -> None:
    fp = of(FOLDER)
    assert fp.files == tuple(sorted((p, hashlib.sha256(b).hexdigest()) for p, b in FOLDER.items()))
    assert fp == of(dict(reversed(FOLDER.items())))  # the order files were read in is no matter


def test_the_digest_is_the_sha256_of_sha256sum_lines_sorted_by_path() -> None:
    lines = "".join(
        f"{hashlib.sha256(FOLDER[p]).hexdigest()}  {p}\n" for p in sorted(FOLDER)
    ).encode()
    assert of(FOLDER).digest == hashlib.sha256(lines).hexdigest()
    assert of(FOLDER).short == of(FOLDER).digest[:12]


def test_a_same_size_edit_changes_the_fingerprint() -> None:
    edited = {**FOLDER, "partners.yaml": b"partners: {}\n"}
    assert len(edited["partners.yaml"]) == len(FOLDER["partners.yaml"])
    assert of(edited) != of(FOLDER)
    assert changes(of(FOLDER), of(edited)) == Changes(changed=("partners.yaml",))


def test_a_deleted_file_is_removed() -> None:
    fewer = {k: v for k, v in FOLDER.items() if k != "agreements/a.yaml"}
    assert of(fewer) != of(FOLDER)
    assert changes(of(FOLDER), of(fewer)) == Changes(removed=("agreements/a.yaml",))
    assert str(changes(of(FOLDER), of(fewer))) == "removed agreements/a.yaml"


def test_the_same_bytes_under_another_name_are_a_rename() -> None:
    moved = {k: v for k, v in FOLDER.items() if k != "agreements/a.yaml"}
    moved["agreements/b.yaml"] = FOLDER["agreements/a.yaml"]
    diff = changes(of(FOLDER), of(moved))
    assert diff == Changes(renamed=(("agreements/a.yaml", "agreements/b.yaml"),))
    assert str(diff) == "renamed agreements/a.yaml to agreements/b.yaml"
    assert diff.to_dict()["renamed"] == [{"from": "agreements/a.yaml", "to": "agreements/b.yaml"}]


def test_an_entry_not_read_is_part_of_the_fingerprint() -> None:
    """A stray file must trigger a reload (which refuses it), and its removal another."""
    stray = of(FOLDER, {"agreements/x.yml": "not read"})
    assert stray != of(FOLDER)
    assert changes(of(FOLDER), stray) == Changes(added=("agreements/x.yml",))
    assert changes(stray, of(FOLDER)) == Changes(removed=("agreements/x.yml",))


def test_nothing_known_before_means_every_file_is_added() -> None:
    assert changes(None, of(FOLDER)).added == tuple(sorted(FOLDER))
    assert not changes(of(FOLDER), of(FOLDER))
    assert str(changes(of(FOLDER), of(FOLDER))) == "no file changed"


def test_the_log_line_of_many_changes_stays_short() -> None:
    many = of({**FOLDER, **{f"agreements/x{i:03}.yaml": b"id: x\n" for i in range(500)}})
    line = str(changes(of(FOLDER), many))
    assert line.startswith("added agreements/x000.yaml, ")
    assert line.endswith(", and 490 more")
    assert len(line) < 400


# --- which entries the broker reads (pure) ----------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "is_dir", "action"),
    [
        ("scheme.yaml", False, Action.READ),
        ("partners.yaml", False, Action.READ),
        ("operators.yaml", False, Action.READ),
        ("agreements", True, Action.DESCEND),
        ("agreements/gbr-usa.yaml", False, Action.READ),
        # editors', rsync's and Kubernetes' droppings
        (".partners.yaml.swp", False, Action.IGNORE),
        ("agreements/.gbr-usa.yaml.swp", False, Action.IGNORE),
        ("agreements/gbr-usa.yaml~", False, Action.IGNORE),
        ("agreements/#gbr-usa.yaml#", False, Action.IGNORE),
        ("agreements/.#gbr-usa.yaml", False, Action.IGNORE),
        (".partners.yaml.Xy12Ab", False, Action.IGNORE),
        ("..data", True, Action.IGNORE),
        # what an operator may believe is read
        ("agreements/x.yml", False, Action.REFUSE),
        ("agreements/x.YAML", False, Action.REFUSE),
        ("agreements/notes.txt", False, Action.REFUSE),
        ("agreements/x.yaml.off", False, Action.REFUSE),
        ("agreements/old", True, Action.REFUSE),
        ("agreements/old/x.yaml", False, Action.REFUSE),
        ("agreements/x.yaml", True, Action.REFUSE),
        ("partners.yml", False, Action.REFUSE),
        ("gbr-usa.yaml", False, Action.REFUSE),
        ("old-agreements", True, Action.REFUSE),
        ("agreements", False, Action.REFUSE),
        ("scheme.yaml", True, Action.REFUSE),
        ("README.md", False, Action.REFUSE),
    ],
)
def test_each_entry_is_read_ignored_or_refused(rel: str, is_dir: bool, action: Action) -> None:
    assert classify(rel, is_dir=is_dir) is action


@pytest.mark.parametrize(
    ("rel", "is_dir", "hint"),
    [
        ("agreements/x.yml", False, "agreements end in .yaml, rename it agreements/x.yaml"),
        ("partners.yml", False, "did you mean partners.yaml?"),
        ("Operators.YAML", False, "did you mean operators.yaml?"),
        ("gbr-usa.yaml", False, "agreements go in agreements/"),
        ("agreements/x.yaml.off", False, "to end an agreement, move its file out"),
        ("agreements/old", True, "a folder the broker does not read"),
        ("agreements/notes.txt", False, "not read by the broker: move it out"),
    ],
)
def test_a_refusal_says_what_was_meant_and_what_is_allowed(
    rel: str, is_dir: bool, hint: str
) -> None:
    message = refusal(rel, is_dir=is_dir)
    assert hint in message
    assert "holds only scheme.yaml, partners.yaml, operators.yaml and agreements/<id>.yaml" in (
        message
    )


# --- when a watcher round loads the folder (pure) ---------------------------------------------


def test_a_round_loads_only_a_folder_neither_in_force_nor_already_refused() -> None:
    in_force, bad, other = of(FOLDER), of(FOLDER, {"x": "not read"}), of({})
    record = PolicyReloads(in_force, datetime.now(UTC))
    assert not record.needs_load(in_force)
    assert record.needs_load(bad)
    record.refuse(Refusal(bad, datetime.now(UTC), changes(in_force, bad), ("x: not read",)))
    assert record.error == "x: not read"
    assert not record.needs_load(bad)  # told once, not every round
    assert record.needs_load(other)
    record.outstanding = False  # the folder went back to the policy in force
    assert record.error is None
    assert record.needs_load(bad)  # the same bad edit again is refused (and logged) again
    assert PolicyReloads().needs_load(in_force)  # nothing known: load what is there


# --- the reader, on a real folder -------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "policies"
    shutil.copytree(POLICIES, root)
    return root


def test_the_shipped_folder_is_read_whole(folder: Path) -> None:
    files = read_policy_folder(folder)
    assert files.unread == {}
    expected = {p.relative_to(folder).as_posix() for p in folder.rglob("*.yaml")}
    assert set(files.contents) == expected
    assert files.contents["scheme.yaml"] == (folder / "scheme.yaml").read_bytes()


def test_an_edit_with_the_same_size_and_mtime_is_seen(folder: Path) -> None:
    path = folder / "partners.yaml"
    before = fingerprint(read_policy_folder(folder))
    info = path.stat()
    text = path.read_bytes()
    path.write_bytes(text.replace(b"status: active", b"status: ACTIVE", 1))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert path.stat().st_size == info.st_size
    assert path.stat().st_mtime_ns == info.st_mtime_ns
    after = fingerprint(read_policy_folder(folder))
    assert changes(before, after) == Changes(changed=("partners.yaml",))


def test_droppings_are_ignored_and_strays_are_listed_with_why(folder: Path) -> None:
    clean = fingerprint(read_policy_folder(folder))
    (folder / ".partners.yaml.swp").write_bytes(b"\0" * 10)
    (folder / "agreements" / "fvey-cyber.yaml~").write_text("old")
    (folder / "agreements" / "#fvey-cyber.yaml#").write_text("autosave")
    (folder / "..data").mkdir()
    assert fingerprint(read_policy_folder(folder)) == clean

    (folder / "agreements" / "x.yml").write_text("id: x\n")
    (folder / "agreements" / "old").mkdir()
    (folder / "notes.txt").write_text("todo")
    files = read_policy_folder(folder)
    assert set(files.unread) == {"agreements/x.yml", "agreements/old", "notes.txt"}
    assert "agreements/x.yml" not in files.contents
    assert "a folder the broker does not read" in files.unread["agreements/old"]


def test_a_fifo_named_like_a_policy_file_is_refused_without_a_hang(folder: Path) -> None:
    (folder / "partners.yaml").unlink()
    os.mkfifo(folder / "partners.yaml")
    result: list[PolicyFiles] = []
    reader = threading.Thread(target=lambda: result.append(read_policy_folder(folder)))
    reader.daemon = True
    reader.start()
    reader.join(timeout=10)
    assert result, "reading the folder hung on a FIFO"
    assert result[0].unread == {"partners.yaml": "not a regular file; not read"}


def test_a_huge_file_is_refused_unread(folder: Path) -> None:
    with (folder / "agreements" / "huge.yaml").open("wb") as huge:
        huge.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    files = read_policy_folder(folder)
    assert "agreements/huge.yaml" not in files.contents
    assert "over the 8 MiB limit" in files.unread["agreements/huge.yaml"]


def test_a_broken_link_is_an_error_not_a_missing_file(folder: Path) -> None:
    (folder / "agreements" / "gone.yaml").symlink_to(folder / "nowhere.yaml")
    files = read_policy_folder(folder)
    assert files.unread["agreements/gone.yaml"].startswith("cannot be read:")


def test_a_link_to_a_file_is_read(folder: Path, tmp_path: Path) -> None:
    """Kubernetes mounts each ConfigMap key as a link into a hidden folder."""
    target = tmp_path / "scheme.yaml"
    (folder / "scheme.yaml").rename(target)
    (folder / "scheme.yaml").symlink_to(target)
    assert read_policy_folder(folder).contents["scheme.yaml"] == target.read_bytes()


def test_a_folder_with_too_many_entries_is_read_only_so_far(folder: Path) -> None:
    agreements = folder / "agreements"
    for i in range(MAX_DIR_ENTRIES + 1):
        (agreements / f".x{i}").touch()
    files = read_policy_folder(folder)
    assert "more than" in files.unread["agreements/"]


def test_a_name_that_is_not_utf8_is_refused_printably(folder: Path) -> None:
    with open(os.fsencode(folder) + b"/agreements/x\xff.yaml", "wb") as odd:
        odd.write(b"id: x\n")
    files = read_policy_folder(folder)
    assert files.unread == {
        "agreements/x\\xff.yaml": "the name is not UTF-8: rename it or move it out"
    }
    assert fingerprint(files).digest  # and it can be fingerprinted, logged and shown as JSON


def test_a_missing_folder_is_said_so(tmp_path: Path) -> None:
    files = read_policy_folder(tmp_path / "nowhere")
    assert not files.listed
    assert list(files.unread.values()) == ["policy folder does not exist"]
