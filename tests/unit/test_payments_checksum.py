"""Payment Platform checksums and times: the rules of PORTAL.md §4, and the pitfalls seen in real code."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.national_time import parse_portal_time, portal_time
from connector.payments.checksum import (
    NOTIFICATION_FIELDS,
    QUERY_FIELDS,
    REPLY_FIELDS,
    ChecksumRefused,
    checksum,
    signed,
    verify,
)

SECRET = "s3cret-shared"
NOTIFICATION = {
    "LoaiBanTin": "THANHTOAN", "MaLoi": "00", "MaDoiTac": "BXD", "MaThamChieu": "BXD-2024-000123",
    "SoTien": 1500000, "MaTienTe": "VND", "MaGiaoDich": "PP-998877", "MaNganHang": "VCB",
    "ThoiGianGD": "20240506143005", "ThongTinGiaoDich": "Lệ phí cấp chứng chỉ hành nghề",
}


def test_the_checksum_is_sha256_of_the_fields_joined_by_bars_then_the_secret() -> None:
    joined = ("THANHTOAN|00|BXD|BXD-2024-000123|1500000|VND|PP-998877|VCB|20240506143005|"
              "Lệ phí cấp chứng chỉ hành nghề|s3cret-shared")
    assert checksum(NOTIFICATION, NOTIFICATION_FIELDS, SECRET) == hashlib.sha256(joined.encode()).hexdigest()
    query = {"LoaiBanTin": "QUERY", "PhienBan": "1.0", "MaDoiTac": "BXD", "MaThamChieu": "R1",
             "ThoiGianGD": "20240506143005"}
    assert checksum(query, QUERY_FIELDS, SECRET) == hashlib.sha256(
        b"QUERY|1.0|BXD|R1|20240506143005|s3cret-shared").hexdigest()
    reply = {"MaLoi": "00", "MaDoiTac": "BXD", "MaThamChieu": "R1", "ThoiGianGD": "20240506143005"}
    assert checksum(reply, REPLY_FIELDS, SECRET) == hashlib.sha256(
        b"00|BXD|R1|20240506143005|s3cret-shared").hexdigest()


def test_a_signed_message_verifies_and_any_change_or_another_secret_is_refused() -> None:
    message = signed(NOTIFICATION, NOTIFICATION_FIELDS, SECRET)
    verify(message, NOTIFICATION_FIELDS, SECRET)
    verify({**message, "MaXacThuc": message["MaXacThuc"].upper()}, NOTIFICATION_FIELDS, SECRET)
    with pytest.raises(ChecksumRefused, match="MaXacThuc: does not match"):
        verify({**message, "SoTien": 1}, NOTIFICATION_FIELDS, SECRET)
    with pytest.raises(ChecksumRefused, match="does not match"):
        verify(message, NOTIFICATION_FIELDS, "another secret")
    for bad in (None, "", "zz" * 32, message["MaXacThuc"][:-1], 12):
        with pytest.raises(ChecksumRefused, match="MaXacThuc: must be 64 hexadecimal digits"):
            verify({**message, "MaXacThuc": bad}, NOTIFICATION_FIELDS, SECRET)


def test_a_field_holding_the_separator_is_refused_so_fields_cannot_be_shifted_into_each_other() -> None:
    genuine = {**NOTIFICATION, "ThongTinGiaoDich": "Lệ phí|đợt 1"}
    shifted = {**NOTIFICATION, "MaNganHang": "VCB|20240506143005", "ThoiGianGD": "Lệ phí",
               "ThongTinGiaoDich": "đợt 1"}
    # Without the rule both would join to the same text, so share one checksum.
    assert "|".join(str(genuine[f]) for f in NOTIFICATION_FIELDS) == "|".join(
        str(shifted[f]) for f in NOTIFICATION_FIELDS)
    for message, culprit in ((genuine, "ThongTinGiaoDich"), (shifted, "MaNganHang")):
        with pytest.raises(ChecksumRefused) as refused:
            checksum(message, NOTIFICATION_FIELDS, SECRET)
        assert refused.value.field == culprit


@pytest.mark.parametrize("value", [True, 1.5, ["x"], {"a": 1}])
def test_values_that_are_neither_text_nor_whole_numbers_are_refused(value: object) -> None:
    with pytest.raises(ChecksumRefused) as refused:
        checksum({**NOTIFICATION, "SoTien": value}, NOTIFICATION_FIELDS, SECRET)
    assert refused.value.field == "SoTien"


text = st.text(alphabet=st.characters(blacklist_characters="|", blacklist_categories=("Cs",)), max_size=40)


@given(st.fixed_dictionaries({name: text for name in NOTIFICATION_FIELDS}), st.sampled_from(NOTIFICATION_FIELDS),
       text)
def test_any_message_verifies_as_signed_and_not_once_a_field_changed(message: dict[str, str], field: str,
                                                                     other: str) -> None:
    sent = signed(message, NOTIFICATION_FIELDS, SECRET)
    verify(sent, NOTIFICATION_FIELDS, SECRET)
    if other != message[field]:
        with pytest.raises(ChecksumRefused):
            verify({**sent, field: other}, NOTIFICATION_FIELDS, SECRET)


def test_times_are_on_the_24_hour_clock_in_hanoi() -> None:
    afternoon = datetime(2024, 5, 6, 7, 30, 5, tzinfo=UTC)  # 14:30:05 in Hanoi
    assert portal_time(afternoon) == "20240506143005"
    assert parse_portal_time("20240506143005") == afternoon
    with pytest.raises(ValueError, match="zone"):
        portal_time(datetime(2024, 5, 6, 14, 30, 5))
    full_width = "２０２４０５０６１４３００５"
    for bad in ("2024050614300", "20240506143005Z", "2024-05-06 14:30", "20241306143005", full_width):
        with pytest.raises(ValueError):  # noqa: PT011 - several messages
            parse_portal_time(bad)
