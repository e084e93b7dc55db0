"""The one error type the command line turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """Bad input or missing results: something the user can fix; the message is one line."""


def one_line(err: BaseException, last: bool = False) -> str:
    """The first (or last) non-blank line of an error's message, stripped; its type when
    it has none. Ray wraps a trial's exception in a traceback whose last line names it."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[-1] if last else lines[0]) if lines else type(err).__name__
