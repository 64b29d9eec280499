"""An RL-sized sample (speed benchmark and agreement corpus)."""
import sqlite3


def get_user(db_path, username):
    conn = sqlite3.connect(db_path)
    cursor = conn.cursor()
    cursor.execute("SELECT * FROM users WHERE name = '" + username + "'")
    row = cursor.fetchone()
    conn.close()
    return row
