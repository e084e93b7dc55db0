"""The one error type the command line turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """Bad input or missing results: something the user can fix; the message is one line."""


def one_line(err: BaseException) -> str:
    """The first line of an error's message (its type when it has none)."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
