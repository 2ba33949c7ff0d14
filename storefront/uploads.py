"""Uploads that meet a full disk while Django spools them to a temporary file: the file is dropped, the request
goes on, and the view says why, instead of a 500 from deep inside request parsing (before any view runs:
the CSRF check reads the body first)."""

import contextlib
import logging
import os

from django.core.files.uploadhandler import SkipFile, TemporaryFileUploadHandler

logger = logging.getLogger(__name__)


class SpoolingUploadHandler(TemporaryFileUploadHandler):
    """Django's temporary-file handler; an OSError while spooling (disk full, quota) skips the file and leaves
    `request.upload_error` set to the error for the view to show."""

    def new_file(self, *args, **kwargs):
        try:
            super().new_file(*args, **kwargs)
        except OSError as exc:
            self._failed(exc)

    def receive_data_chunk(self, raw_data, start):
        try:
            return super().receive_data_chunk(raw_data, start)
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError):
        logger.warning("an upload could not be spooled to a temporary file: %s", exc.strerror or type(exc).__name__)
        self.request.upload_error = exc
        if hasattr(self, "file"):
            with contextlib.suppress(OSError):
                path = self.file.temporary_file_path()
                self.file.close()
                os.remove(path)
            del self.file
        raise SkipFile(str(exc))


def upload_error(request) -> OSError | None:
    """The error that made an upload of this request be dropped, if any."""
    return getattr(request, "upload_error", None)
