"""An RL-sized sample (speed benchmark and agreement corpus)."""
def fibonacci(n):
    """Return the n-th Fibonacci number."""
    if n < 0:
        raise ValueError("n must be non-negative")
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def is_prime(n):
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


print([fibonacci(k) for k in range(10) if is_prime(k)])
