"""Caller-name word search on SQLite (issue #11, finding 13): the query ari-recorder runs now
(a byte range on the primary key) beside the one it ran before (`LIKE 'prefix%'`, which SQLite
cannot answer from that index), over 1,000,000 rows of `recording_words` with the same schema
as migrations/sqlite/0003, 36 two-to-four-letter prefixes. Python's sqlite3 module, so the
engine is the system's SQLite, not the one linked into ari-recorder; the plans are the same.
Usage: python3 benches/word_search.py"""
import random, sqlite3, string, time

random.seed(7)
db = sqlite3.connect(":memory:")
db.executescript(open(__file__.replace("benches/word_search.py", "migrations/sqlite/0003_recording_words.sql")).read())
words = ["".join(random.choice(string.ascii_lowercase) for _ in range(random.randint(3, 9))) for _ in range(50_000)]
db.executemany("INSERT OR IGNORE INTO recording_words (word, recording_id) VALUES (?, ?)",
               ((random.choice(words), i // 3) for i in range(1_000_000)))
db.commit()
rows = db.execute("SELECT COUNT(*) FROM recording_words").fetchone()[0]
prefixes = [w[: random.randint(2, 4)] for w in random.sample(words, 36)]


def run(sql, args_of):
    start = time.perf_counter()
    found = 0
    for p in prefixes:
        found += len(db.execute(sql, args_of(p)).fetchall())
    return (time.perf_counter() - start) * 1000, found


plan_new = db.execute("EXPLAIN QUERY PLAN SELECT recording_id FROM recording_words WHERE word >= ? AND word < ?", ("ab", "ab\U0010ffff")).fetchall()[0][3]
plan_old = db.execute("EXPLAIN QUERY PLAN SELECT recording_id FROM recording_words WHERE word LIKE ? ESCAPE '\\'", ("ab%",)).fetchall()[0][3]
new_ms, new_found = run("SELECT recording_id FROM recording_words WHERE word >= ? AND word < ?", lambda p: (p, p + "\U0010ffff"))
old_ms, old_found = run("SELECT recording_id FROM recording_words WHERE word LIKE ? ESCAPE '\\'", lambda p: (p + "%",))
assert new_found == old_found, (new_found, old_found)
print(f"{rows} rows, 36 prefixes, {new_found} matches")
print(f"range on the primary key (now): {new_ms:.1f} ms total, {new_ms / 36:.2f} ms a word  [{plan_new}]")
print(f"peer, LIKE (before): {old_ms:.1f} ms total, {old_ms / 36:.2f} ms a word  [{plan_old}]")
