#!/usr/bin/env python3
"""The library's database goes away for 30 s under recorded calls, on a real Asterisk (issue 30,
item 4).

Starts ari-recorder on SQLite (held by another writer, `BEGIN IMMEDIATE`) or PostgreSQL (the
database's connections refused and its backends ended, `--postgres URL` of a server this
script may administer), places N recorded bridged calls one a second while the database takes
no writes for `--hold` seconds, then lets it back and reports:

- calls cut (a recording shorter than the agent's ~16 s) and recordings missing,
- how long after the database's return every recording was in the library, final, with its
  call (none quarantined),
- what `/readyz` and the recordings list answered meanwhile, and rows written twice.

Usage: db_outage.py --bin target/release/ari-recorder --recordings /tmp/ast/spool/recording
                    [--postgres postgres://postgres@127.0.0.1:55432/postgres] [--calls 30]
"""
import os
import sqlite3
import subprocess
import tempfile
import time

import requests

import restart

FLOW = """
[flow]
numbers = ["7011"]
start = "desk"
[nodes.desk]
type = "transfer"
target = "Local/201@agents"
record_call = true
"""


def psql(url, sql):
    subprocess.run(["psql", url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL)


def main():
    p = restart.bench_arguments()
    p.add_argument("--postgres", help="admin URL of a PostgreSQL server (default: SQLite)")
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--hold", type=float, default=30.0)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="db-outage-")
    os.makedirs(os.path.join(work, "dialplans"))
    with open(os.path.join(work, "dialplans", "outage.toml"), "w") as f:
        f.write(FLOW)
    database = None
    if args.postgres:
        name = "outage_%d" % os.getpid()
        psql(args.postgres, "CREATE DATABASE %s" % name)
        database = args.postgres.rsplit("/", 1)[0] + "/" + name
    token = "db-outage-bench-token-0123456789abcdef"
    os.environ["METRICS_TOKEN"] = token
    log = open(os.path.join(work, "serve.log"), "w")
    serve = restart.start_serve(args, work, log, database)
    base = None
    while not base:
        with open(log.name) as f:
            for line in f:
                if "ari-recorder started" in line:
                    base = "http://" + line.split("http=")[1].split()[0]
        time.sleep(0.1)
    # An admin's API token for the list, made with the command line.
    cli_env = dict(os.environ, ARI_RECORDER_PASSWORD="bench-admin-password-1",
                   DATABASE_URL=database or "sqlite://%s/library.db?mode=rwc" % work)
    subprocess.run([args.bin, "user", "add", "--username", "bench-admin", "--role", "admin"],
                   env=cli_env, capture_output=True, check=True)
    made = subprocess.run([args.bin, "token", "create", "--user", "bench-admin", "--name",
                           "bench", "--scopes", "recordings:read"],
                          env=cli_env, capture_output=True, text=True, check=True)
    token_line = [w for w in made.stdout.split() if len(w) > 30]
    api = requests.Session()
    api.headers["Authorization"] = "Bearer " + (token_line[-1] if token_line else "")
    ari = requests.Session()
    ari.auth = (args.user, args.password)

    # Hold the database.
    holder = None
    if args.postgres:
        psql(args.postgres, "ALTER DATABASE %s ALLOW_CONNECTIONS false" % name)
        psql(args.postgres, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
             "WHERE datname = '%s'" % name)
    else:
        holder = sqlite3.connect(os.path.join(work, "library.db"), timeout=5,
                                 isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    held = time.time()
    during = {"readyz": set(), "list": set()}
    placed = 0

    def place(i):
        ari.post(args.ari + "/ari/channels", params={
            "endpoint": "Local/7011@inbound", "context": "callers", "extension": "talk",
            "priority": 1, "callerId": "Outage %d <5556%03d>" % (i, i),
            "timeout": 30}).raise_for_status()

    while time.time() - held < args.hold:
        if placed < args.calls:
            place(placed)
            placed += 1
        try:
            r = requests.get(base + "/readyz", timeout=2).json()
            during["readyz"].add("%s (%s)" % (r.get("status"), str(r.get("database_writes"))[:13]))
            lst = api.get(base + "/api/recordings", timeout=10)
            during["list"].add("%d %s" % (lst.status_code, lst.json().get("error", "")))
        except requests.RequestException as e:
            during["readyz"].add("error " + type(e).__name__)
        time.sleep(1)
    while placed < args.calls:
        place(placed)
        placed += 1
    if args.postgres:
        psql(args.postgres, "ALTER DATABASE %s ALLOW_CONNECTIONS true" % name)
    else:
        holder.execute("ROLLBACK")
        holder.close()
    released = time.time()
    # Calls over in Asterisk by then (each call in progress holds one bridge).
    ended_before = args.calls - len(ari.get(args.ari + "/ari/bridges").json())
    caught_up = None
    # Every recording final, with its call, in the library.
    rows = []
    in_library = None
    while time.time() - released < 120:
        # This run's recordings (the folder may hold others', quarantined in this library).
        rows = query(args.postgres and database, work,
                     "SELECT r.name, r.status, r.duration_ms, "
                     "(SELECT COUNT(*) FROM call_recordings c WHERE c.recording_name = r.name) "
                     "FROM recordings r WHERE r.name LIKE 'transfer-%' AND r.mtime_ms >= "
                     + str(int(held * 1000)))
        channels = ari.get(args.ari + "/ari/channels").json()
        final = [r for r in rows if r[1] == "ready" and r[3] == 1]
        if caught_up is None and len(final) >= ended_before:
            caught_up = time.time() - released
        if len(final) >= args.calls and not channels:
            in_library = time.time() - released
            break
        time.sleep(0.5)
    last_call_end = time.time()
    ready_after = requests.get(base + "/readyz", timeout=2).json().get("status")
    serve.terminate()
    serve.wait()
    calls = query(args.postgres and database, work,
                  "SELECT COUNT(*), COUNT(DISTINCT recording_name) FROM call_recordings")[0]
    short = [r for r in rows if (r[2] or 0) < 14000]
    print("database: %s, held %.0f s, %d calls placed one a second from the hold" % (
        "PostgreSQL" if args.postgres else "SQLite", args.hold, args.calls))
    print("while held: /readyz %s; recordings list %s" % (
        sorted(during["readyz"]), sorted(during["list"])))
    print("recordings in the library, final with their call: %d of %d; quarantined %d; "
          "missing %d" % (len([r for r in rows if r[1] == "ready" and r[3] == 1]), args.calls,
                          len([r for r in rows if r[1] == "quarantined"]),
                          args.calls - len(rows)))
    print("the %d recordings of calls over before the return: in the library %s after it" % (
        ended_before, "%.1f s" % caught_up if caught_up is not None else "NEVER"))
    print("all in the library %s after the database's return (the last calls still talking "
          "then)" % ("%.1f s" % in_library if in_library is not None else "NEVER (120 s)"))
    print("recordings shorter than the agent's 16 s (a call cut or delayed): %d; lengths %.1f-%.1f s"
          % (len(short), min((r[2] or 0) for r in rows) / 1000 if rows else 0,
             max((r[2] or 0) for r in rows) / 1000 if rows else 0))
    print("call rows %d, distinct %d (written twice: %d); /readyz after: %s" % (
        calls[0], calls[1], calls[0] - calls[1], ready_after))
    print("work folder:", work)
    _ = last_call_end


def query(pg_url, work, sql):
    if pg_url:
        out = subprocess.run(["psql", pg_url, "-At", "-F", "|", "-c", sql], check=True,
                             capture_output=True, text=True).stdout
        rows = []
        for line in out.splitlines():
            parts = line.split("|")
            rows.append(tuple(int(x) if x.isdigit() else (x or None) for x in parts))
        return rows
    db = sqlite3.connect(os.path.join(work, "library.db"), timeout=5)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


if __name__ == "__main__":
    main()
