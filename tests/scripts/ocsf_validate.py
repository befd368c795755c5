"""Validates OCSF records (one JSON object per line on stdin) against the
OCSF 1.2 models of the `ocsf-pydantic` package: each record by the model of
its class_uid, strictly (an attribute the model does not know is an error,
outside `unmapped`), and its type_uid and category against the model's.
Prints a count per class; exits 1 at the first invalid record, naming it."""

import json
import sys

from pydantic import ConfigDict

from ocsf.events.application.application_lifecycle import ApplicationLifecycle
from ocsf.events.findings.detection import DetectionFinding
from ocsf.events.network.network_activity import NetworkActivity
from ocsf.events.system.filesystem import FileSystemActivity
from ocsf.events.system.process import ProcessActivity

MODELS = {
    1001: FileSystemActivity,
    1007: ProcessActivity,
    2004: DetectionFinding,
    4001: NetworkActivity,
    6002: ApplicationLifecycle,
}


# Activities of OCSF 1.2 classes whose model in the package lacks them
# (it has only 0 and 99 for Network Activity): checked against this table,
# then the record is validated with 99 in their place.
SPEC_ACTIVITIES = {
    4001: {1: "Open", 2: "Close", 3: "Reset", 4: "Fail", 5: "Refuse", 6: "Traffic", 7: "Listen"},
}

# Attributes an OCSF profile adds to any class (the models have none):
# `host` brings `device` and `actor`; `security_control` what was done
# (`action`, `disposition` and their ids).
PROFILE_ATTRIBUTES = {
    "host": {"device", "actor"},
    "security_control": {"action", "action_id", "disposition", "disposition_id"},
}


def unknown_keys(record, dumped, path="", allowed=frozenset()):
    """Keys of `record` that the validated model did not keep."""
    missing = []
    if isinstance(record, dict) and isinstance(dumped, dict):
        for key, value in record.items():
            if key == "unmapped" or (path == "" and key in allowed):
                continue
            # The package folds OCSF's process.container object into the
            # process itself; OCSF 1.2 has `container` on process.
            if key == "container" and path.endswith("process"):
                continue
            if key not in dumped:
                missing.append(path + key)
            else:
                missing += unknown_keys(value, dumped[key], path + key + ".")
    elif isinstance(record, list) and isinstance(dumped, list):
        for i, (a, b) in enumerate(zip(record, dumped)):
            missing += unknown_keys(a, b, f"{path}{i}.")
    return missing


def main():
    counts = {}
    for n, line in enumerate(sys.stdin, 1):
        record = json.loads(line)
        model = MODELS.get(record.get("class_uid"))
        if model is None:
            sys.exit(f"line {n}: class_uid {record.get('class_uid')} has no model: {line}")
        # OCSF gives every activity_id 99 "Other" (the source's own
        # activity, named by activity_name); the package's enums leave it
        # out. Such a record is validated with activity 1 (every class here
        # has one) in its place, and its own activity and type checked here.
        checked = record
        spec = SPEC_ACTIVITIES.get(record.get("class_uid"))
        if spec is not None:
            name = spec.get(record.get("activity_id"))
            if name is None or name != record.get("activity_name"):
                sys.exit(f"line {n}: activity {record.get('activity_id')} "
                         f"{record.get('activity_name')!r} is not OCSF 1.2's: {line}")
            if record.get("type_uid") != record["class_uid"] * 100 + record["activity_id"]:
                sys.exit(f"line {n}: type_uid {record.get('type_uid')} is not computed")
            checked = dict(record, activity_id=99)
            del checked["type_uid"]
        elif record.get("activity_id") == 99:
            if not record.get("activity_name"):
                sys.exit(f"line {n}: activity_id 99 (Other) without an activity_name: {line}")
            if record.get("type_uid") != record["class_uid"] * 100 + 99:
                sys.exit(f"line {n}: type_uid {record.get('type_uid')} is not class_uid * 100 + 99")
            checked = dict(record, activity_id=1)
            del checked["type_uid"]
        try:
            parsed = model.model_validate(checked)
        except Exception as err:  # pydantic's ValidationError, with every field
            sys.exit(f"line {n}: not a valid {model.__name__}: {err}\n{line}")
        dumped = json.loads(parsed.model_dump_json(exclude_none=True))
        profiles = record.get("metadata", {}).get("profiles", [])
        allowed = set().union(*(PROFILE_ATTRIBUTES.get(p, set()) for p in profiles))
        extra = unknown_keys(checked, dumped, allowed=allowed)
        if extra:
            sys.exit(f"line {n}: attributes {model.__name__} does not have: {extra}\n{line}")
        for key in ("type_uid", "category_uid", "class_uid"):
            if key in checked and dumped.get(key) != record.get(key):
                sys.exit(f"line {n}: {key} {record.get(key)} but the model says {dumped.get(key)}")
        counts[record["class_uid"]] = counts.get(record["class_uid"], 0) + 1
    print(json.dumps(counts, sort_keys=True))


main()
