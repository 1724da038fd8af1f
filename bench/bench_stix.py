"""What checking a STIX 2.1 bundle before sealing catches and costs.

Candidates, each on the same bundle of 1,000 objects (identities, indicators, malware,
relationships, a quarter each, all valid): stix2-validator's ``validate_parsed_json``,
``stix2.parse(allow_custom=True)``, and the chosen ``clients.stix.check_bundle`` (Tearline's
shape checks, stix2-validator, the marking check). Medians of per-bundle times; then which
candidate catches which broken bundle, and what importing each costs in a fresh process.

    python -m bench.bench_stix [--quick]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from random import Random
from typing import Any

import stix2
from stix2validator import ValidationOptions, validate_parsed_json

from bench._timing import write
from tearline.clients.errors import StixError
from tearline.clients.protocol.label import Label
from tearline.clients.stix import TLP2_MARKING_IDS, check_bundle, stamp
from tearline.clients.stix.check import marking_conflicts, parse_bundle

TS = "2026-01-01T00:00:00.000Z"
LABEL = Label("CONFIDENTIAL", ["USA", "EST"], "AMBER", topics=["ransomware"])
OPTIONS = ValidationOptions(version="2.1", strict=False, silent=True)


def make_bundle(n: int, seed: int = 7) -> dict[str, Any]:
    rng = Random(seed)

    def sid(kind: str) -> str:
        return f"{kind}--{uuid.UUID(int=rng.getrandbits(128), version=4)}"

    common = {"spec_version": "2.1", "created": TS, "modified": TS}
    author = {**common, "type": "identity", "id": sid("identity"), "name": "GBR-CERT",
              "identity_class": "organization"}  # fmt: skip
    objects: list[dict[str, Any]] = [author]
    while len(objects) < n:
        i = len(objects)
        by = {"created_by_ref": author["id"], "object_marking_refs": [TLP2_MARKING_IDS["GREEN"]]}
        if i % 4 == 0:
            objects.append({**common, **by, "type": "identity", "id": sid("identity"),
                            "name": f"Org {i}", "identity_class": "organization"})  # fmt: skip
        elif i % 4 == 1:
            objects.append({**common, **by, "type": "indicator", "id": sid("indicator"),
                            "name": f"C2 {i}", "pattern_type": "stix",
                            "pattern": f"[ipv4-addr:value = '198.51.100.{i % 250}']",
                            "valid_from": "2026-01-01T00:00:00Z",
                            "indicator_types": ["malicious-activity"]})  # fmt: skip
        elif i % 4 == 2:
            objects.append({**common, **by, "type": "malware", "id": sid("malware"),
                            "name": f"Locker {i}", "is_family": True,
                            "malware_types": ["ransomware"]})  # fmt: skip
        else:
            objects.append({**common, **by, "type": "relationship", "id": sid("relationship"),
                            "relationship_type": "indicates", "source_ref": objects[-2]["id"],
                            "target_ref": objects[-1]["id"]})  # fmt: skip
    return {"type": "bundle", "id": sid("bundle"), "objects": objects}


def median_s(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm: schemas loaded, patterns compiled
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _validator_catches(bundle: dict[str, Any]) -> bool:
    try:
        result = validate_parsed_json(bundle, OPTIONS)
    except Exception:
        return True
    return not result.is_valid


def _stix2_catches(bundle: dict[str, Any]) -> bool:
    try:
        stix2.parse(bundle, allow_custom=True)
    except Exception:
        return True
    return False


def _chosen_catches(bundle: dict[str, Any]) -> bool:
    try:
        check_bundle(json.dumps(bundle).encode(), LABEL)
    except StixError:
        return True
    return False


def cases() -> list[tuple[str, bool, dict[str, Any]]]:
    """(name, should it be refused, bundle)."""
    base = make_bundle(4, seed=1)
    ind = base["objects"][1]

    def with_(obj: dict[str, Any]) -> dict[str, Any]:
        return {**base, "objects": [base["objects"][0], obj]}

    no_id = {k: v for k, v in ind.items() if k != "id"}
    no_spec = {k: v for k, v in ind.items() if k != "spec_version"}
    red = {**ind, "object_marking_refs": [TLP2_MARKING_IDS["RED"]]}
    custom = {**ind, "type": "x-acme-note", "id": ind["id"].replace("indicator", "x-acme-note")}
    return [
        ("valid bundle", False, base),
        ("empty bundle", False, {**base, "objects": []}),
        ("custom object type", False, with_(custom)),
        ("custom property", False, with_({**ind, "x_acme_score": 3})),
        ("object without id", True, with_(no_id)),
        ("spec_version 2.0", True, with_({**ind, "spec_version": "2.0"})),
        ("no spec_version", True, with_(no_spec)),
        ("bad timestamp", True, with_({**ind, "created": "yesterday"})),
        ("no milliseconds", True, with_({**ind, "created": "2026-01-01T00:00:00Z"})),
        ("modified < created", True, with_({**ind, "modified": "2025-01-01T00:00:00.000Z"})),
        ("bad pattern", True, with_({**ind, "pattern": "[ipv4-addr:value = "})),
        ("TLP:RED object, AMBER label", True, with_(red)),
    ]


def import_s(module: str, repeats: int) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    runs = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        runs.append(float(done.stdout))
    return statistics.median(runs)


def main() -> None:
    quick = "--quick" in sys.argv
    repeats = 3 if quick else 7
    size = 200 if quick else 1000
    bundle = make_bundle(size)
    payload = json.dumps(bundle).encode()
    timings = {
        "json.loads": median_s(lambda: json.loads(payload), repeats),
        "stix2-validator validate_parsed_json": median_s(
            lambda: validate_parsed_json(bundle, OPTIONS), repeats
        ),
        "stix2.parse(allow_custom=True)": median_s(
            lambda: stix2.parse(bundle, allow_custom=True), repeats
        ),
        "chosen: clients.stix.check_bundle": median_s(
            lambda: check_bundle(payload, LABEL), repeats
        ),
        "  of which Tearline's shape checks": median_s(lambda: parse_bundle(payload), repeats),
        "  of which the marking check": median_s(lambda: marking_conflicts(bundle, LABEL), repeats),
        "stamp (on receipt)": median_s(
            lambda: stamp(bundle, label=LABEL, originator="GBR", report_id="r"), repeats
        ),
    }
    print(f"per bundle of {size} objects (median of {repeats})")
    print(f"{'':40} {'s/bundle':>9} {'ms/object':>10}")
    for name, seconds in timings.items():
        print(f"{name:40} {seconds:>9.3f} {seconds * 1000 / size:>10.3f}")

    rows = []
    print(
        f"\n{'what the bundle has':30} {'refuse?':>7} {'validator':>9} {'stix2':>6} {'chosen':>6}"
    )
    for name, refuse, value in cases():
        got = (_validator_catches(value), _stix2_catches(value), _chosen_catches(value))
        rows.append({"case": name, "should_refuse": refuse, "validator": got[0],
                     "stix2_parse": got[1], "chosen": got[2]})  # fmt: skip
        marks = ["refused" if g else "passed" for g in got]
        print(f"{name:30} {'yes' if refuse else 'no':>7} {marks[0]:>9} {marks[1]:>6} {marks[2]:>6}")

    imports = {m: import_s(m, 3) for m in ("stix2validator", "stix2")}
    print("\nimport in a fresh process (median of 3):")
    for module, seconds in imports.items():
        print(f"  {module:20} {seconds:.2f} s")
    out = write(
        "stix",
        {
            "objects": size,
            "repeats": repeats,
            "seconds_per_bundle": {k: round(v, 4) for k, v in timings.items()},
            "catches": rows,
            "import_seconds": {k: round(v, 3) for k, v in imports.items()},
        },
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
