"""Async code, classes with methods, decorators, and a generated-code style module."""
import asyncio
import dataclasses
from typing import Any, Dict


def retry(times):
    def decorator(func):
        async def wrapper(*args, **kwargs):
            for attempt in range(times):
                try:
                    return await func(*args, **kwargs)
                except (OSError, asyncio.TimeoutError):
                    if attempt == times - 1:
                        raise
            return None

        return wrapper

    return decorator


@retry(times=3)
async def fetch(session, url: str) -> Dict[str, Any]:
    async with session.get(url) as response:
        if response.status != 200 and response.status != 304:
            raise OSError(response.status)
        return await response.json()


async def fetch_all(session, urls):
    results = []
    async for chunk in session.stream(urls):
        results.append(chunk)
    gathered = await asyncio.gather(*(fetch(session, u) for u in urls))
    return [r async for r in aiter_results(gathered) if r] + results


async def aiter_results(items):
    for item in items:
        yield item


@dataclasses.dataclass(frozen=True)
class Account:
    owner: str
    balance: float = 0.0
    history: list = dataclasses.field(default_factory=list)

    def deposit(self, amount):
        if amount <= 0:
            raise ValueError("amount must be positive")
        return dataclasses.replace(self, balance=self.balance + amount)

    def withdraw(self, amount):
        if amount <= 0 or amount > self.balance:
            raise ValueError("invalid amount")
        elif amount == self.balance:
            return dataclasses.replace(self, balance=0.0)
        return dataclasses.replace(self, balance=self.balance - amount)

    @classmethod
    def empty(cls, owner):
        return cls(owner)

    @staticmethod
    def describe(account):
        kind = "rich" if account.balance > 1000 else "poor" if account.balance < 10 else "ok"
        return f"{account.owner}: {account.balance:.2f} ({kind})"


class Bank:
    """A bank."""

    def __init__(self):
        self.accounts = {}

    def open(self, owner):
        if owner in self.accounts:
            return self.accounts[owner]
        account = Account.empty(owner)
        self.accounts[owner] = account
        return account

    def transfer(self, src, dst, amount):
        try:
            a = self.accounts[src].withdraw(amount)
            b = self.accounts[dst].deposit(amount)
        except KeyError as missing:
            raise LookupError(str(missing)) from None
        else:
            self.accounts[src], self.accounts[dst] = a, b
        finally:
            self.audit(src, dst, amount)

    def audit(self, *entries):
        return len([e for e in entries if e is not None and e != ""])

    def richest(self):
        return max(self.accounts.values(), key=lambda acc: acc.balance, default=None)


def solve(nums, target):
    seen = {}
    for i, n in enumerate(nums):
        if target - n in seen:
            return [seen[target - n], i]
        seen[n] = i
    return []


def fizzbuzz(n):
    out = []
    for i in range(1, n + 1):
        if i % 15 == 0:
            out.append("FizzBuzz")
        elif i % 3 == 0:
            out.append("Fizz")
        elif i % 5 == 0:
            out.append("Buzz")
        else:
            out.append(str(i))
    return out


if __name__ == "__main__":
    print(fizzbuzz(15), solve([2, 7, 11, 15], 9))
