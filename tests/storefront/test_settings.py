import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def test_private_storage_switches_to_an_s3_bucket_when_configured():
    env = {
        "PATH": "/usr/bin:/bin",
        "S3_BUCKET": "shop-private",
        "S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "KEY_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    code = (
        "import django; django.setup();"
        'from django.core.files.storage import storages; s = storages["default"];'
        "print(type(s).__name__, s.bucket_name, s.default_acl, s.querystring_auth)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "storefront.settings"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["S3Storage", "shop-private", "private", "True"]
