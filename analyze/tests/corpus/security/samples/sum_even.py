"""An RL-sized sample (speed benchmark and agreement corpus)."""
def solve(nums):
    """Return the sum of the even numbers in nums."""
    total = 0
    for n in nums:
        if n % 2 == 0:
            total += n
    return total


def check():
    assert solve([1, 2, 3, 4]) == 6
    assert solve([]) == 0
