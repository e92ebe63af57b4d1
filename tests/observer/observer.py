#!/usr/bin/env python3
"""An observer of a Patroni cluster, independent of pgpatrol (issue 24's verdicts).

While a scenario runs, it writes numbered rows through one multi-host read-write connection
(libpq's target_session_attrs=read-write, through psycopg2) and records each row the server
acknowledged; every 200 ms it asks every member's PostgreSQL directly whether it is in
recovery, its timeline and its start time, and every member's Patroni for its role. On
SIGTERM it stops writing, polls until a round sees every member up (at most 15 s, so a member
back a moment before is seen restarted), finds the leader, reads the rows back, checks the
invariants and writes its verdict (JSON) to --out, and prints one line:

  acknowledged_kept       every acknowledged row is on the final leader
  one_writable            never two members writable at once
  down_at_most            never more members down at once than --allowed-down
  leader_not_reinitialized  no POST /reinitialize in --audit-log went to a member that was
                          the leader (or standby leader) when it was sent
  leader_changes          no more leader changes than --leader-changes (when given)

It never reads pgpatrol's output: the verdict is what it saw.

  observer.py --members members.json --password-file F --out verdict.json \\
              [--allowed-down 1] [--audit-log audit.jsonl] [--leader-changes N]

members.json: [{"name": "pg0", "host": "127.0.0.1", "port": 5432,
                "api": "http://127.0.0.1:8008"}, ...]
"""

import argparse
import concurrent.futures
import json
import signal
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone

import psycopg2

POLL_EVERY = 0.2
SETTLE_FOR = 15
WRITE_EVERY = 0.02


def now():
    return time.time()


def connect(members, password, read_write, timeout=2):
    kw = dict(
        user="postgres",
        password=password,
        dbname="postgres",
        connect_timeout=timeout,
        application_name="observer",
    )
    if read_write:
        kw["host"] = ",".join(m["host"] for m in members)
        kw["port"] = ",".join(str(m["port"]) for m in members)
        kw["target_session_attrs"] = "read-write"
    else:
        kw["host"] = members[0]["host"]
        kw["port"] = members[0]["port"]
    c = psycopg2.connect(**kw)
    c.autocommit = True
    return c


class Observer:
    def __init__(self, args):
        self.args = args
        self.members = json.load(open(args.members))
        self.password = open(args.password_file).read().splitlines()[0]
        self.stop = threading.Event()
        self.acked = []
        self.write_errors = 0
        self.rounds = []
        self.lock = threading.Lock()

    # Writes numbered rows until told to stop; a row counts once the server said COMMIT.
    def writer(self):
        n = 0
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = connect(self.members, self.password, True)
                n += 1
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO observer_rows(n) VALUES (%s)", (n,))
                with self.lock:
                    self.acked.append(n)
            except psycopg2.Error:
                self.write_errors += 1
                try:
                    if conn is not None:
                        conn.close()
                except psycopg2.Error:
                    pass
                conn = None
                time.sleep(0.1)
            time.sleep(WRITE_EVERY)

    def member_now(self, m):
        seen = {"pg_up": False, "writable": False}
        try:
            c = connect([m], self.password, False, timeout=1)
            with c.cursor() as cur:
                cur.execute(
                    "SELECT pg_is_in_recovery(), (SELECT timeline_id FROM pg_control_checkpoint()),"
                    " extract(epoch FROM pg_postmaster_start_time())"
                )
                rec, tl, start = cur.fetchone()
            c.close()
            seen.update(pg_up=True, writable=not rec, timeline=tl, start=float(start))
        except psycopg2.Error:
            pass
        try:
            with urllib.request.urlopen(m["api"] + "/patroni", timeout=1) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            try:
                body = json.load(e)
            except ValueError:
                body = {}
        except (OSError, ValueError):
            body = {}
        seen["role"] = body.get("role")
        seen["state"] = body.get("state")
        return seen

    def poller(self):
        # Every member at the same moment (one thread each), so a round is a snapshot: polled
        # one after another, a member that takes its 1 s timeout would push the next one's
        # reading seconds later, and "down at once" would join moments that were apart.
        # Once stopped, rounds go on until one sees every member up (at most SETTLE_FOR): a
        # member that came back a moment before the stop (a former leader whose demotion
        # ended as the scenario repaired the lab) is then seen with its new start time.
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(self.members))
        settle_until = None
        while True:
            t = now()
            seen = list(pool.map(self.member_now, self.members))
            with self.lock:
                self.rounds.append({"t": t, "members": {m["name"]: s for m, s in zip(self.members, seen)}})
            if self.stop.is_set():
                settle_until = settle_until or now() + SETTLE_FOR
                if all(s["pg_up"] for s in seen) or now() > settle_until:
                    break
            time.sleep(max(0.0, POLL_EVERY - (now() - t)))

    def leader_rows(self):
        deadline = now() + 60
        while True:
            try:
                c = connect(self.members, self.password, True)
                with c.cursor() as cur:
                    cur.execute("SELECT n FROM observer_rows")
                    rows = {r[0] for r in cur.fetchall()}
                    cur.execute("SELECT inet_server_port()")
                    port = cur.fetchone()[0]
                c.close()
                leader = next((m["name"] for m in self.members if m["port"] == port), str(port))
                return leader, rows
            except psycopg2.Error as e:
                if now() > deadline:
                    raise SystemExit(f"observer: no writable member within 60 s: {e}")
                time.sleep(0.5)

    def audit(self):
        if not self.args.audit_log:
            return []
        try:
            lines = open(self.args.audit_log).read().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def verdict(self):
        leader, rows = self.leader_rows()
        lost = [n for n in self.acked if n not in rows]
        inv = {}
        inv["acknowledged_kept"] = {
            "held": not lost,
            "detail": f"{len(self.acked)} acknowledged, {len(lost)} missing on {leader}"
            + (f" (first {lost[:5]})" if lost else ""),
        }
        most_writable = max((sum(s["writable"] for s in r["members"].values()) for r in self.rounds), default=0)
        inv["one_writable"] = {"held": most_writable <= 1, "detail": f"at most {most_writable} writable at once"}
        def down(r):
            return sorted(n for n, s in r["members"].items() if not s["pg_up"])

        worst = max(self.rounds, key=lambda r: len(down(r)), default=None)
        most_down = len(down(worst)) if worst else 0
        inv["down_at_most"] = {
            "held": most_down <= self.args.allowed_down,
            "detail": f"at most {most_down} down at once (allowed {self.args.allowed_down})"
            + (
                f": {', '.join(down(worst))} at {datetime.fromtimestamp(worst['t'], timezone.utc).isoformat()}"
                if most_down
                else ""
            ),
        }
        # Which member was the leader at a time: the last round before it.
        def leader_at(t):
            before = [r for r in self.rounds if r["t"] <= t]
            if not before:
                return set()
            ms = before[-1]["members"]
            return {n for n, s in ms.items() if s["writable"] or s.get("role") in ("primary", "master", "standby_leader")}

        bad = []
        for a in self.audit():
            url = a.get("url") or ""
            if a.get("method") == "POST" and url.endswith("/reinitialize"):
                t = datetime.fromisoformat(a["time"].replace("Z", "+00:00")).timestamp()
                target = next((m["name"] for m in self.members if url.startswith(m["api"])), a.get("member"))
                if target in leader_at(t):
                    bad.append(target)
        inv["leader_not_reinitialized"] = {
            "held": not bad,
            "detail": f"reinitialized while leading: {bad}" if bad else "no leader reinitialized",
        }
        leaders = []
        for r in self.rounds:
            w = [n for n, s in r["members"].items() if s["writable"]]
            if len(w) == 1 and (not leaders or leaders[-1] != w[0]):
                leaders.append(w[0])
        changes = max(0, len(leaders) - 1)
        if self.args.leader_changes is not None:
            inv["leader_changes"] = {
                "held": changes <= self.args.leader_changes,
                "detail": f"{changes} leader changes ({' -> '.join(leaders)}), allowed {self.args.leader_changes}",
            }
        starts = {}
        for r in self.rounds:
            for n, s in r["members"].items():
                if "start" in s:
                    starts.setdefault(n, []).append(s["start"])
        restarted = sorted(n for n, v in starts.items() if len(set(v)) > 1)
        return {
            "invariants": inv,
            "held": all(v["held"] for v in inv.values()),
            "acknowledged": len(self.acked),
            "lost": len(lost),
            "write_errors": self.write_errors,
            "rounds": len(self.rounds),
            "final_leader": leader,
            "leaders": leaders,
            "restarted": restarted,
        }

    def run(self):
        # The table first, through the leader.
        deadline = now() + 60
        while True:
            try:
                c = connect(self.members, self.password, True)
                with c.cursor() as cur:
                    cur.execute("CREATE TABLE IF NOT EXISTS observer_rows (n bigint PRIMARY KEY, at timestamptz DEFAULT now())")
                    cur.execute("TRUNCATE observer_rows")
                c.close()
                break
            except psycopg2.Error as e:
                if now() > deadline:
                    raise SystemExit(f"observer: cannot create its table: {e}")
                time.sleep(0.5)
        threads = [threading.Thread(target=f, daemon=True) for f in (self.writer, self.poller)]
        for t in threads:
            t.start()
        print("observing", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop.set())
        while not self.stop.is_set():
            self.stop.wait(0.2)
        for t in threads:
            t.join(SETTLE_FOR + 10)
        v = self.verdict()
        json.dump(v, open(self.args.out, "w"), indent=1)
        broke = [k for k, i in v["invariants"].items() if not i["held"]]
        print(
            "verdict: "
            + ("held" if not broke else "BROKEN " + ", ".join(broke))
            + f" ({v['acknowledged']} rows acknowledged, {v['lost']} lost, {v['rounds']} rounds)",
            flush=True,
        )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", required=True)
    p.add_argument("--password-file", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--allowed-down", type=int, default=1)
    p.add_argument("--audit-log")
    p.add_argument("--leader-changes", type=int)
    Observer(p.parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
