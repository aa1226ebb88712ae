"""Moved to :mod:`fmal.session.backup`; this name stays while branches written against it are merged."""

from fmal.session.backup import (SESSION_OWNED, backup_dir, drop_vanished, has_human_work, labeled_ids,  # noqa: F401
                                 move_to_backup, refuse_overwrite)
