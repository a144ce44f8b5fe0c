"""The simulated Payment Platform: QUERY checks and replies, pending answers, result notifications (no HTTP).

Every checksum is checked with the connector's own ``connector.payments.checksum``, as the client will."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from connector.dev.simulator.payment_platform import CallbackSpec, PaymentPlatform, PaymentSpec
from connector.dev.simulator.state import SimulatorConfig, SimulatorState
from connector.national_time import PORTAL_TZ
from connector.payments.checksum import (
    NOTIFICATION_FIELDS,
    QUERY_FIELDS,
    QUERY_REPLY_FIELDS,
    REPLY_FIELDS,
    ChecksumRefused,
    signed,
    verify,
)

PARTNER = "PORTALSYNC"
SECRET = "pp-secret"
# 15:30:05 in Hà Nội: an afternoon, where a 12-hour clock would show 03.
AFTERNOON = datetime(2026, 1, 2, 15, 30, 5, tzinfo=PORTAL_TZ).timestamp()


def platform() -> PaymentPlatform:
    return PaymentPlatform(PARTNER, SECRET, wall_clock=lambda: AFTERNOON)


def query(reference: str = "REF-1", *, secret: str = SECRET, **changes: Any) -> dict[str, Any]:
    message = {"LoaiBanTin": "QUERY", "PhienBan": "1.0", "MaDoiTac": PARTNER, "MaThamChieu": reference,
               "ThoiGianGD": "20260102153000", **changes}
    return signed(message, QUERY_FIELDS, secret)


def pay(pp: PaymentPlatform, reference: str = "REF-1", **spec: Any) -> None:
    pp.register([PaymentSpec.model_validate({"MaThamChieu": reference, "SoTien": 150_000, "outcome": "paid", **spec})])


def test_the_config_carries_the_pp_defaults_and_the_state_builds_the_platform_from_them() -> None:
    config = SimulatorConfig()
    assert (config.pp_partner_code, config.pp_secret, config.pp_query_path) == (PARTNER, SECRET, "/pp/query")
    state = SimulatorState(SimulatorConfig(pp_partner_code="BXD", pp_secret="other"))
    assert state.payments.partner_code == "BXD"


def test_a_paid_payment_is_answered_with_every_notification_field_signed_for_the_query_reply() -> None:
    pp = platform()
    pay(pp, MaGiaoDich="PP-42")
    reply = pp.query(query())

    verify(reply, QUERY_REPLY_FIELDS, SECRET)
    assert set(reply) == {*NOTIFICATION_FIELDS, "TrangThaiGD", "MaXacThuc"}
    assert reply["LoaiBanTin"] == "QUERY"
    assert reply["MaLoi"] == "00"
    assert reply["TrangThaiGD"] == "1"
    assert reply["MaDoiTac"] == PARTNER
    assert reply["MaThamChieu"] == "REF-1"
    assert reply["SoTien"] == "150000"
    assert reply["MaTienTe"] == "VND"
    assert reply["MaGiaoDich"] == "PP-42"
    assert reply["ThoiGianGD"] == "20260102153005"  # 24-hour clock, Asia/Ho_Chi_Minh
    assert pp.views()["REF-1"]["queries"] == 1


def test_failed_and_pending_payments() -> None:
    pp = platform()
    pay(pp, "FAIL", outcome="failed")
    pay(pp, "FAIL-51", outcome="failed", MaLoi="51")
    pay(pp, "WAIT", outcome="pending")

    failed = pp.query(query("FAIL"))
    verify(failed, QUERY_REPLY_FIELDS, SECRET)
    assert (failed["TrangThaiGD"], failed["MaLoi"]) == ("4", "12")
    assert pp.query(query("FAIL-51"))["MaLoi"] == "51"
    for _ in range(5):  # pending for ever
        pending = pp.query(query("WAIT"))
        verify(pending, QUERY_REPLY_FIELDS, SECRET)
        assert (pending["TrangThaiGD"], pending["MaLoi"]) == ("3", "00")
    assert pp.views()["WAIT"]["queries"] == 5


def test_pending_queries_are_answered_pending_before_the_outcome_shows() -> None:
    pp = platform()
    pay(pp, pending_queries=2)
    assert [pp.query(query())["TrangThaiGD"] for _ in range(4)] == ["3", "3", "1", "1"]
    assert pp.views() == {"REF-1": {"outcome": "paid", "SoTien": 150_000, "queries": 4, "callbacks": 0,
                                    "MaGiaoDich": pp.payments["REF-1"].transaction_no}}


def test_registering_a_payment_again_changes_its_outcome_and_keeps_its_counts() -> None:
    pp = platform()
    pay(pp, outcome="pending")
    assert pp.query(query())["TrangThaiGD"] == "3"
    number = pp.payments["REF-1"].transaction_no
    pay(pp, outcome="paid", pending_queries=1)
    assert [pp.query(query())["TrangThaiGD"] for _ in range(2)] == ["3", "1"]
    assert pp.views()["REF-1"]["queries"] == 3
    assert pp.payments["REF-1"].transaction_no == number


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (query(secret="not the secret"), "MaXacThuc: does not match the message and the shared secret"),
        ({**query(), "MaXacThuc": "abc"}, "MaXacThuc: must be 64 hexadecimal digits (SHA-256)"),
        ({**query(), "MaThamChieu": "REF-2"}, "MaXacThuc: does not match"),  # changed after signing
        (query(MaDoiTac="SOMEONE"), "MaDoiTac: unknown partner"),
        (query(LoaiBanTin="GET_BILL"), "LoaiBanTin: must be QUERY"),
        (query(ThoiGianGD="2026-01-02"), "ThoiGianGD: must be yyyyMMddHHmmss"),
        ({k: v for k, v in query().items() if k != "PhienBan"}, "PhienBan: required"),
        ({k: v for k, v in query().items() if k != "MaXacThuc"}, "MaXacThuc: required"),
        (query("NOBODY"), "Không tìm thấy giao dịch"),
        ([query()], "the message must be a JSON object"),
        (None, "the message must be a JSON object"),
    ],
)
def test_a_refused_query_is_answered_99_naming_the_problem_and_signed(message: Any, reason: str) -> None:
    pp = platform()
    pay(pp)
    reply = pp.query(message)
    assert reply["MaLoi"] == "99"
    assert reply["MoTaLoi"].startswith(reason)
    assert "TrangThaiGD" not in reply
    verify(reply, REPLY_FIELDS, SECRET)
    assert pp.views()["REF-1"]["queries"] == 0


def test_a_refusal_echoes_only_what_can_go_into_a_checksum() -> None:
    reply = platform().query({**query(), "MaThamChieu": "A|B", "MaDoiTac": 7})
    assert (reply["MaLoi"], reply["MaThamChieu"], reply["MaDoiTac"]) == ("99", "", "")
    verify(reply, REPLY_FIELDS, SECRET)


def test_a_notification_verifies_with_the_shared_secret_and_is_counted() -> None:
    pp = platform()
    pay(pp)
    sent = pp.notification("REF-1", CallbackSpec(url="http://127.0.0.1:1/pp"))
    assert sent is not None
    verify(sent, NOTIFICATION_FIELDS, SECRET)
    assert set(sent) == {*NOTIFICATION_FIELDS, "MaXacThuc"}
    assert (sent["LoaiBanTin"], sent["MaLoi"], sent["SoTien"], sent["ThoiGianGD"]) == (
        "NOTIFY", "00", "150000", "20260102153005")
    assert pp.views()["REF-1"]["callbacks"] == 1


def test_a_spoilt_notification_does_not_verify() -> None:
    pp = platform()
    pay(pp)
    pay(pp, "FAIL", outcome="failed")
    wrong = pp.notification("REF-1", CallbackSpec(url="http://x/pp", checksum="wrong"))
    assert wrong is not None
    with pytest.raises(ChecksumRefused, match="does not match"):
        verify(wrong, NOTIFICATION_FIELDS, SECRET)

    overridden = pp.notification("REF-1", CallbackSpec.model_validate(
        {"url": "http://x/pp", "SoTien": 1, "MaDoiTac": "OTHER", "MaLoi": "24", "LoaiBanTin": "THANHTOAN"}))
    assert overridden is not None
    verify(overridden, NOTIFICATION_FIELDS, SECRET)  # signed as sent: the amount and partner are what is wrong
    assert (overridden["SoTien"], overridden["MaDoiTac"], overridden["MaLoi"], overridden["LoaiBanTin"]) == (
        "1", "OTHER", "24", "THANHTOAN")

    failed = pp.notification("FAIL", CallbackSpec(url="http://x/pp"))
    assert failed is not None
    assert failed["MaLoi"] == "12"
    assert pp.notification("NOBODY", CallbackSpec(url="http://x/pp")) is None
    assert pp.views()["REF-1"]["callbacks"] == 2


def test_payment_specs_refuse_what_cannot_be_signed_or_is_not_money() -> None:
    for bad in ({"MaThamChieu": "A|B"}, {"SoTien": "150000"}, {"SoTien": -1}, {"outcome": "lost"},
                {"pending_queries": -1}, {"surprise": 1}):
        with pytest.raises(ValueError, match="validation error"):
            PaymentSpec.model_validate({"MaThamChieu": "REF-1", "SoTien": 1, "outcome": "paid", **bad})
    with pytest.raises(ValueError, match="validation error"):
        CallbackSpec.model_validate({"url": "ftp://x"})
