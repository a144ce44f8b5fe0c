"""Sample events look like what the one-stop system publishes: valid by the contract, versioned per
dossier, reproducible, and with exactly the three broken events the pipeline must dead-letter."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from functools import cache
from typing import Any

import jsonschema
import pytest
import yaml

from connector.config import DEFAULT_MAPPINGS_DIR, SCHEMAS_DIR
from connector.dev.samples import PROCEDURES, SampleMessage, bad_events, generate_events

BAD_LABELS = {"malformed-json", "schema-invalid", "unmapped-status"}


@cache
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS_DIR / "events" / "dossier-event.v1.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


@cache
def mapping(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEFAULT_MAPPINGS_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    return loaded


@cache
def sample(dossiers: int = 50, seed: int = 2019) -> tuple[SampleMessage, ...]:
    return tuple(generate_events(dossiers=dossiers, seed=seed))


def valid_events(messages: tuple[SampleMessage, ...] | list[SampleMessage]) -> list[dict[str, Any]]:
    return [json.loads(m.value) for m in messages if m.label == "valid"]


def test_every_valid_sample_satisfies_the_event_schema() -> None:
    for message in sample():
        if message.label == "valid":
            errors = [e.message for e in validator().iter_errors(json.loads(message.value))]
            assert not errors, f"{message.dossier_no} v{message.version}: {errors[:3]}"


def test_versions_run_from_one_in_publishing_order_and_the_key_is_the_dossier_number() -> None:
    versions: dict[str, list[int]] = defaultdict(list)
    for message in sample():
        if message.label != "valid":
            continue
        event = json.loads(message.value)
        assert message.key == event["dossier"]["no"].encode("utf-8")
        assert (message.dossier_no, message.version) == (event["dossier"]["no"], event["dossier"]["version"])
        versions[event["dossier"]["no"]].append(event["dossier"]["version"])
    assert len(versions) == 50
    for no, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), no
        assert 2 <= len(seen) <= 8, no


def test_dossiers_interleave_and_each_dossier_moves_forward_in_time() -> None:
    last_time: dict[str, datetime] = {}
    switches = 0
    previous_no = None
    for event in valid_events(sample()):
        no, at = event["dossier"]["no"], datetime.fromisoformat(event["occurred_at"])
        assert at.utcoffset() == timedelta(hours=7)
        assert no not in last_time or at > last_time[no], no
        last_time[no] = at
        switches += no != previous_no
        previous_no = no
    assert switches > len(last_time) * 2  # not one dossier after another


def test_the_same_seed_gives_the_same_stream_and_another_seed_a_different_one() -> None:
    assert generate_events(dossiers=20, seed=7) == generate_events(dossiers=20, seed=7)
    assert generate_events(dossiers=20, seed=7) != generate_events(dossiers=20, seed=8)
    later = datetime(2021, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=7)))
    shifted = valid_events(generate_events(dossiers=5, start=later))
    assert all(event["occurred_at"] >= "2021-03-01" for event in shifted)


def test_a_hundred_dossiers_give_at_least_three_hundred_events() -> None:
    assert len([m for m in generate_events(dossiers=100) if m.label == "valid"]) >= 300


def test_fixed_events_per_dossier_give_exactly_that_many() -> None:
    messages = generate_events(dossiers=40, min_events_per_dossier=5, max_events_per_dossier=5, include_bad=False)
    assert len(messages) == 200
    assert all(m.label == "valid" for m in messages)


@pytest.mark.parametrize(("low", "high"), [(0, 3), (4, 3)])
def test_an_impossible_event_range_is_refused(low: int, high: int) -> None:
    with pytest.raises(ValueError, match="min_events_per_dossier"):
        generate_events(min_events_per_dossier=low, max_events_per_dossier=high)


def test_a_naive_start_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_events(start=datetime(2020, 10, 5, 8, 0))  # a naive time is the point of the test


def test_the_three_bad_events_are_in_the_stream_and_fail_as_labelled() -> None:
    messages = sample()
    bad = {m.label: (index, m) for index, m in enumerate(messages) if m.label != "valid"}
    assert set(bad) == BAD_LABELS
    positions = sorted(index for index, _ in bad.values())
    assert positions[0] > 0 and positions[-1] < len(messages) - 1  # spread through, not at the ends
    assert [m for _, m in sorted(bad.values(), key=lambda item: item[0])] == bad_events()

    with pytest.raises(json.JSONDecodeError):
        json.loads(bad["malformed-json"][1].value)

    invalid = json.loads(bad["schema-invalid"][1].value)
    errors = list(validator().iter_errors(invalid))
    assert [(list(e.path), e.validator) for e in errors] == [(["dossier"], "required")]
    assert "agency_code" in errors[0].message

    unmapped = json.loads(bad["unmapped-status"][1].value)
    assert not list(validator().iter_errors(unmapped))
    status = mapping("status")["status"]
    assert unmapped["dossier"]["status"] == "archived"
    assert "archived" not in status["by_status"] and unmapped["dossier"]["sub_status"] not in status["by_sub_status"]


def test_bad_events_belong_to_dossiers_of_their_own() -> None:
    valid_numbers = {m.dossier_no for m in sample() if m.label == "valid"}
    for message in bad_events():
        assert message.key is not None and message.dossier_no is not None
        assert message.key == message.dossier_no.encode("utf-8")
        assert message.dossier_no not in valid_numbers
    assert generate_events(dossiers=10, include_bad=False) == [
        m for m in generate_events(dossiers=10) if m.label == "valid"
    ]


def test_every_procedure_code_exists_in_the_mappings() -> None:
    known = set(mapping("procedures")["procedures"])
    assert {p.code for p in PROCEDURES} <= known
    used = {event["dossier"]["procedure_code"] for event in valid_events(sample(200))}
    assert used <= known
    assert used == {p.code for p in PROCEDURES}  # a large enough stream uses every one


def test_dossier_numbers_begin_with_the_agency_code() -> None:
    pattern = re.compile(r"^(?P<agency>[0-9A-Z.]+)-(?P<day>\d{6})-(?P<seq>\d{4})$")
    for event in valid_events(sample()):
        dossier = event["dossier"]
        match = pattern.match(dossier["no"])
        assert match and match["agency"] == dossier["agency_code"], dossier["no"]
        assert match["day"] == datetime.fromisoformat(dossier["received_at"]).strftime("%y%m%d")


def test_every_note_names_its_version() -> None:
    for event in valid_events(sample()):
        version = event["dossier"]["version"]
        assert f"(phiên bản {version})" in event["dossier"]["note"]
        step_note = event.get("step", {}).get("note")
        assert step_note is None or f"(phiên bản {version})" in step_note


def test_the_stream_exercises_what_the_portal_side_must_handle() -> None:
    events = valid_events(sample())
    steps = [e["step"] for e in events if "step" in e]
    dossiers = [e["dossier"] for e in events]
    last = {d["no"]: d for d in dossiers}  # the newest state of each dossier

    # Length limits (mappings/limits.yaml): summary 1000, note 2000, actor 50.
    assert any(len(d["summary"]) > 1000 for d in dossiers)
    long_notes = [d["note"] for d in dossiers if len(d["note"]) > 2000]
    assert long_notes and all(note.index("(phiên bản") < 100 for note in long_notes)  # survives a cut
    assert any(len(s["actor"]) > 50 for s in steps)
    assert sum(len(s["actor"]) <= 50 for s in steps) > 0.8 * len(steps)
    # Step notes are sometimes missing, as in production.
    assert any(s["note"] is None for s in steps) and any(s["note"] for s in steps)
    # The whole lifecycle vocabulary appears.
    assert {e["event_type"] for e in events} >= {
        "dossier.received", "dossier.step", "dossier.updated", "dossier.completed", "dossier.returned",
    }
    assert {d["status"] for d in last.values()} >= {"returned", "processing"}
    assert {d["sub_status"] for d in dossiers} >= {"supplement_requested"}
    assert {d["channel"] for d in dossiers} == {"direct", "online", "postal"}
    assert {d["origin"] for d in dossiers} == {"local", "portal"}
    assert any(doc["deleted"] for d in dossiers for doc in d["documents"])
    assert any(d["fees"] for d in dossiers)
    for d in last.values():
        if d["status"] == "returned":
            assert d["finished_at"] and d["returned_at"] and d["results"]
            assert all(r["url"].startswith("https://motcua.moc.gov.vn/files/") for r in d["results"])


def test_applicants_look_like_real_people_and_companies() -> None:
    applicants = {e["dossier"]["no"]: e["dossier"]["applicant"] for e in valid_events(sample())}
    citizens = [a for a in applicants.values() if a["type"] == "citizen"]
    businesses = [a for a in applicants.values() if a["type"] == "business"]
    assert citizens and businesses
    for citizen in citizens:
        assert re.fullmatch(r"\d{12}", citizen["id_number"])
        assert re.fullmatch(r"09\d{8}", citizen["phone"])
        assert "@" in citizen["email"] and len(citizen["name"].split()) >= 3
    for business in businesses:
        assert re.fullmatch(r"\d{10}", business["id_number"])
        assert business["name"].startswith("Công ty")


def test_extreme_sizes_still_give_valid_streams() -> None:
    one = generate_events(dossiers=1, min_events_per_dossier=1, max_events_per_dossier=1)
    assert [m.label for m in one].count("valid") == 1
    assert len(generate_events(dossiers=0)) == 3  # only the bad ones
    many = generate_events(dossiers=20, min_events_per_dossier=12, max_events_per_dossier=12, include_bad=False)
    assert len(many) == 240
    for message in many:
        assert not list(validator().iter_errors(json.loads(message.value)))
