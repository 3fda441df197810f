"""RT-DC awareness: recognise and check deformability-cytometry files."""
from __future__ import annotations

from pathlib import Path

from ckanext.dcor_depot import errors

#: Mimetype and format of RT-DC resources created by this plugin.
RTDC_MIMETYPE = "RT-DC"
RTDC_FORMAT = "RT-DC"


def claims_rtdc(name: str | Path) -> bool:
    """Whether a file name says RT-DC (``.rtdc``)."""
    return str(name).lower().endswith(".rtdc")


def is_rtdc(path: str | Path) -> bool:
    """Whether dclab opens ``path`` as an RT-DC measurement."""
    try:
        check_rtdc(path)
    except errors.SourceError:
        return False
    return True


def check_rtdc(path: str | Path) -> int:
    """Open ``path`` with dclab; return its event count, or SourceError if
    it is no valid RT-DC file."""
    import dclab

    try:
        with dclab.new_dataset(Path(path)) as ds:
            return len(ds)
    except Exception as exc:
        raise errors.SourceError(f"{path} is not a valid RT-DC file: "
                                 f"{exc.__class__.__name__}: {exc}"
                                 ) from exc
