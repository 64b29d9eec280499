"""Statements after return/raise/continue/break in the same block (our W0101; pyflakes has no
such check, so these lines carry no pyflakes message)."""
import logging

log = logging.getLogger(__name__)


def after_return(x):
    return x
    print("never")


def after_raise(x):
    if x:
        raise ValueError(x)
        log.info("never")
    return x


def in_loops(items):
    for item in items:
        if item:
            continue
            log.debug("never")
        else:
            break
            log.debug("never either")
    while True:
        break
    return items


def reachable(x):
    if x:
        return 1
    else:
        return 2
    # A comment after both branches returned is not a statement.


def one_line(x):
    return x; print(x)


async def coroutine(x):
    await x
    return x
    yield x
