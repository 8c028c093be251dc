"""Static files storage for production."""

from __future__ import annotations

from whitenoise.storage import CompressedManifestStaticFilesStorage


class CompressedManifestStorage(CompressedManifestStaticFilesStorage):
    """WhiteNoise's compressed storage with content-hashed names, once `collectstatic` has
    written its manifest. A file the manifest does not know (`collectstatic` has not run yet,
    as under `make run` and in tests, or not since the file was added) is named as it is,
    and WhiteNoise serves it from its app's folder (WHITENOISE_USE_FINDERS), uncached,
    instead of the page failing with a 500."""

    manifest_strict = False

    def stored_name(self, name: str) -> str:
        if not self.hashed_files:
            return name
        try:
            return str(super().stored_name(name))
        except ValueError:
            return name
