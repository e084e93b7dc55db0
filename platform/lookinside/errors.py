"""The one error type the command line turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """Bad input or missing results: something the user can fix; the message is one line."""


def exit_code(command, *args) -> int:
    """Runs a command-line entry point: a UserError prints one line and gives 2, Ctrl-C
    gives 130, a closed pipe (`... | head`) stops quietly with 1; else the command's code."""
    import os
    import sys

    try:
        return command(*args)
    except UserError as err:
        print(f"lookinside: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lookinside: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def one_line(err: BaseException, last: bool = False) -> str:
    """The first (or last) non-blank line of an error's message, stripped; its type when
    it has none. Ray wraps a trial's exception in a traceback whose last line names it."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[-1] if last else lines[0]) if lines else type(err).__name__
