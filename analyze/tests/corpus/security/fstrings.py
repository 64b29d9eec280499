"""f-strings: literal parts are constants of their own, positioned at the f-string."""
log_file = f"/tmp/{name}.log"
log_file = f"{base}/tmp/x"
log_file = f"/var/tmp/{a}/dev/shm/{b}"
addr = f"0.0.0.0"
addr = f"0.0.0.0{port}"
path = f"/tmp" "/x"
path = "/tmp/" f"{x}"
path = f"{'/tmp/inner'}"
q = f"SELECT * FROM t WHERE a = {a}"
q = f"select {cols} from {table}"
q = f"{x} SELECT * FROM t"
cursor.execute(f"DELETE FROM t WHERE id = {i}")
cursor.execute(
    f"""
    SELECT *
    FROM t
    WHERE a = {a}
    """
)
print(f"{x!r:>10} /tmp")
f"/tmp/{expression_statement}"
password = f"/tmp/{x}"
msg = f"{x=}"
