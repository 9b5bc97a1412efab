"""A handler module that fails at import, as a missing dependency does on Lambda."""

import lambdalite_no_such_dependency  # noqa: F401


def handler(event, context):
    return {}
