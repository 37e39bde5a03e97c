"""The one exception type for mistakes a user can fix (bad config, data path, checkpoint, model).

The CLI turns a `UserError` into one line on stderr and exit status 2, with no traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, described in one line that says what to change."""
