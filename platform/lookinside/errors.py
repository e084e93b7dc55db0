"""The one error type the command line turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """Bad input or missing results: something the user can fix; the message is one line."""
