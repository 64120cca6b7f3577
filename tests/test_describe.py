from datetime import datetime
from decimal import Decimal

from peak_provider.describe import clip, describe, printable


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class SurrogateRepr:
    def __repr__(self) -> str:
        return "\udc80" * 10_000


def test_short_values_are_quoted_with_their_type():
    assert describe("abc") == "'abc'"
    assert describe(2.5) == "float 2.5"
    assert describe(float("nan")) == "float nan"
    assert describe(True) == "bool True"
    assert describe(b"ab") == "bytes b'ab'"
    assert describe(memoryview(b"ab")) == "memoryview b'ab'"
    assert describe(Decimal("1E-400")) == "Decimal('1E-400')"
    assert describe(datetime(9999, 12, 31)) == "datetime.datetime(9999, 12, 31, 0, 0)"
    assert describe([1, 2]) == "list [1, 2]"


def test_long_values_are_quoted_by_type_size_and_a_bounded_prefix():
    blob = describe(bytes(range(256)) * 20_480)
    assert blob.startswith("bytes of 5,242,880 bytes: b'\\x00\\x01\\x02") and blob.endswith("…")
    assert len(blob) <= 230
    text = describe("\x00" * 150)  # short, but its repr is 602 characters
    assert text.startswith("str of 150 characters: '\\x00") and len(text) <= 230
    assert describe(10**5000) == "int of about 5,001 digits"
    assert describe(bytearray(300), limit=10).startswith("bytearray of 300 bytes: b'\\x00\\x00")


def test_it_never_raises_and_returns_valid_utf8():
    assert describe(Unprintable()).startswith("<Unprintable instance at 0x")
    surrogates = describe(SurrogateRepr())
    surrogates.encode()  # strict
    assert surrogates.startswith("SurrogateRepr: ") and len(surrogates) <= 230
    describe("\ud800").encode()
    strided = memoryview(bytes(range(16))).cast("B", (4, 4))[::2]  # not contiguous
    assert describe(strided) == "memoryview b'\\x00\\x01\\x02\\x03\\x08\\t\\n\\x0b'"


def test_clip_bounds_the_text_after_escaping():
    assert clip("abc", 5) == "abc"
    assert clip("abcdef", 5) == "abcd…"
    assert clip("\ud800" * 10, 12) == "\\ud800\\ud80…"  # 12 characters, escapes included
    assert printable("a\udc80") == "a\\udc80" and printable("é") == "é"
