"""Hardcoded SQL: concatenation, %-formatting, .format, .replace, f-strings, execute()."""

query = "SELECT * FROM users WHERE id = " + user_id
query = "SELECT * FROM users WHERE id = %s" % user_id
query = "select name from t where a = '{}'".format(a)
query = "DELETE FROM t WHERE id = {}".replace("{}", x)
query = f"SELECT * FROM users WHERE name = '{name}'"
query = f"UPDATE users SET name = '{name}' WHERE id = {uid}"
query = f"INSERT INTO t (a) VALUES ('{a}')"
query = "SELECT * FROM users"
query = "SELECT * " + "FROM users"
query = "SELECT " + cols + " FROM users"
query = ("SELECT " + cols) + " FROM users WHERE " + cond
query = "INSERT INTO t VALUES (" + v + ")"
query = "insert into t values(" + v + ")"
query = "update t set a = 1 where b = " + b
query = "delete from t where a = " + a
query = "select from " + t
query = "not sql at all " + x
query = "selected fromage " + x
cursor.execute("SELECT * FROM users WHERE id = " + user_id)
cursor.execute("SELECT * FROM users WHERE id = %s" % user_id)
cursor.execute("SELECT * FROM users WHERE id = {}".format(user_id))
cursor.execute("SELECT * FROM users WHERE id = {}".replace("{}", user_id))
cursor.execute(f"SELECT * FROM users WHERE id = {user_id}")
cursor.executemany("INSERT INTO t VALUES (%s)" % v, rows)
cursor.execute(sql="SELECT * FROM users WHERE id = " + user_id)
cursor.execute("SELECT * FROM users WHERE id = %s", (user_id,))
db.run("SELECT * FROM users WHERE id = " + user_id)
execute(("SELECT * FROM t WHERE a = " + a))
cur.execute(
    "SELECT a, b "
    "FROM t "
    "WHERE c = " + c
)
cur.execute("SELECT * FROM t WHERE " + " AND ".join(conds))
q = "SELECT * FROM %s WHERE %s" % (table, where)
q = "SELECT * FROM {} WHERE {}".format
q = 'SELECT * FROM t'.format(x)
q = "SELECT * FROM t WHERE a = " + str(a) + " AND b = " + str(b)
q = f"SELECT * FROM t WHERE {cond}" + " ORDER BY id"
q = b"SELECT * FROM t WHERE a = " + a
"SELECT * FROM t WHERE a = " + a
f"{'SELECT * FROM t'} {x}"
