"""A brute-force dispatcher: the routing rules with no shortcut at all.

Every pass scans every timer and every waiting session in global order and
every member of its queue. It shares nothing with ``qroute.routing`` but the
constants, so it checks the reference's dirty-queue tracking, group skipping
and expansion planning: the tests require both to return the same records.
"""

from __future__ import annotations

from qroute.routing import _reference as R

INFINITE_TIER = 1 << 62


class ModelDispatcher:
    def __init__(self, seed: int = 0) -> None:
        self.queues: dict[int, dict] = {}
        self.recipients: dict[int, dict] = {}
        self.sessions: dict[int, dict] = {}
        self.rng = seed & ((1 << 64) - 1)

    def set_queue(self, q, router, ring_timeout_ms, timeout_ms, tier_expansion=()):
        queue = self.queues.setdefault(q, {"members": [], "cursor": 0, "next_order": 0})
        queue.update(router=router, ring=ring_timeout_ms, timeout=timeout_ms,
                     expansion=sorted(tier_expansion))

    def remove_queue(self, q):
        for member in list(self.queues[q]["members"]):
            self.remove_member(q, member["r"])
        del self.queues[q]

    def add_member(self, q, r, tier=1):
        queue = self.queues[q]
        for member in queue["members"]:
            if member["r"] == r:
                member["tier"] = tier
                return
        queue["members"].append({"r": r, "tier": tier, "order": queue["next_order"], "ready": True})
        queue["next_order"] += 1

    def remove_member(self, q, r):
        self.queues[q]["members"] = [m for m in self.queues[q]["members"] if m["r"] != r]

    def set_member_ready(self, q, r, ready):
        for member in self.queues[q]["members"]:
            if member["r"] == r:
                member["ready"] = bool(ready)

    def add_recipient(self, r, skills={}, bounced_call_limit=0, guard_ms=0):
        self.recipients[r] = {"skills": {k: max(v, 1) for k, v in skills.items()},
                              "limit": bounced_call_limit, "guard": guard_ms, "ready": False,
                              "state": R.FREE, "guard_until": 0, "offer": -1, "deadline": 0,
                              "wrapup_until": 0, "accepted": 0, "idle": 0, "calls": 0,
                              "offers": 0, "talk": 0, "misses": 0}

    def update_recipient(self, r, skills, bounced_call_limit=0, guard_ms=0):
        rec = self.recipients[r]
        rec.update(skills={k: max(v, 1) for k, v in skills.items()}, limit=bounced_call_limit,
                   guard=guard_ms)

    def remove_recipient(self, r):
        rec = self.recipients[r]
        session = -1
        if rec["state"] == R.OFFERED:
            session = rec["offer"]
            self._withdraw(session, r)
        for q in self.queues:
            self.remove_member(q, r)
        del self.recipients[r]
        return session

    def set_ready(self, r, ready, now_ms):
        rec = self.recipients[r]
        if rec["ready"] == bool(ready):
            return
        rec["ready"] = bool(ready)
        if ready:
            rec["misses"] = 0
            if rec["state"] == R.FREE:
                rec["idle"] = now_ms
                rec["guard_until"] = now_ms + rec["guard"]

    def hangup(self, r, now_ms, wrapup_ms=0):
        rec = self.recipients[r]
        rec["talk"] += max(0, now_ms - rec["accepted"])
        if wrapup_ms:
            rec["state"] = R.WRAPUP
            rec["wrapup_until"] = now_ms + wrapup_ms
        else:
            self._free(rec, now_ms)

    def end_wrapup(self, r, now_ms):
        rec = self.recipients[r]
        if rec["state"] != R.WRAPUP:
            return False
        self._free(rec, now_ms)
        return True

    def recipient_stats(self, r):
        rec = self.recipients[r]
        return (rec["state"], rec["calls"], rec["offers"], rec["talk"], rec["misses"], rec["idle"])

    def enqueue(self, s, q, priority, entered_at_ms, seq, skills, now_ms):
        self.sessions[s] = {"q": q, "prio": priority, "entered": entered_at_ms, "seq": seq,
                            "skills": {k: max(v, 1) for k, v in skills.items()},
                            "deadline": now_ms + self.queues[q]["timeout"], "offered": []}

    def remove_session(self, s):
        session = self.sessions.pop(s)
        for r in session["offered"]:
            self.recipients[r]["state"] = R.FREE
            self.recipients[r]["offer"] = -1
        return sorted(session["offered"])

    def accept(self, s, r, now_ms):
        session = self.sessions.pop(s)
        rec = self.recipients[r]
        rec.update(state=R.BUSY, offer=-1, accepted=now_ms, misses=0)
        rec["calls"] += 1
        others = sorted(x for x in session["offered"] if x != r)
        for other in others:
            self.recipients[other].update(state=R.FREE, offer=-1)
        return others

    def reject(self, s, r, now_ms, missed=False):
        return self._decline(s, r, now_ms, missed)

    def queue_order(self, q):
        waiting = [(self._key(s), s) for s, x in self.sessions.items() if x["q"] == q and not x["offered"]]
        return [s for _, s in sorted(waiting)]

    def waiting_count(self, q):
        return len(self.queue_order(q))

    def __len__(self):
        return len(self.sessions)

    def dispatch(self, now_ms):
        out = []
        rings = sorted((rec["deadline"], rec["offer"], r) for r, rec in self.recipients.items()
                       if rec["state"] == R.OFFERED and rec["deadline"] <= now_ms)
        for deadline, s, r in rings:
            q = self.sessions[s]["q"]
            out += (R.MISSED, s, r, q)
            _, bounced = self._decline(s, r, deadline, True)
            if bounced:
                out += (R.BOUNCED, s, r, q)
        wraps = sorted((rec["wrapup_until"], r) for r, rec in self.recipients.items()
                       if rec["state"] == R.WRAPUP and rec["wrapup_until"] <= now_ms)
        for until, r in wraps:
            self._free(self.recipients[r], until)
            out += (R.WRAPUP_END, -1, r, -1)
        timeouts = sorted((x["deadline"], s) for s, x in self.sessions.items()
                          if not x["offered"] and x["deadline"] <= now_ms)
        for _, s in timeouts:
            out += (R.TIMEOUT, s, -1, self.sessions.pop(s)["q"])
        for s in sorted((s for s, x in self.sessions.items() if not x["offered"]),
                        key=lambda s: (self._key(s), s)):
            session = self.sessions[s]
            queue = self.queues[session["q"]]
            for r in self._select(queue, session, now_ms):
                rec = self.recipients[r]
                rec.update(state=R.OFFERED, offer=s, deadline=now_ms + queue["ring"])
                rec["offers"] += 1
                session["offered"].append(r)
                out += (R.OFFER, s, r, session["q"])
        return out

    # ------------------------------------------------------------------

    def _key(self, s):
        x = self.sessions[s]
        return (-x["prio"], x["entered"], x["seq"])

    def _eligible(self, rec, now_ms):
        return rec["ready"] and rec["state"] == R.FREE and rec["guard_until"] <= now_ms

    def _select(self, queue, session, now_ms):
        max_tier = INFINITE_TIER
        if queue["expansion"]:
            waited = now_ms - session["entered"]
            max_tier = max([1] + [t for after, t in queue["expansion"] if after <= waited])
        members = sorted(queue["members"], key=lambda m: m["order"])
        fit = []
        for m in members:
            rec = self.recipients[m["r"]]
            if not (m["ready"] and self._eligible(rec, now_ms)) or m["tier"] > max_tier:
                continue
            if all(rec["skills"].get(k, 0) >= v for k, v in session["skills"].items()):
                fit.append(m)
        if not fit:
            return []
        tier = min(m["tier"] for m in fit)
        fit = [m for m in fit if m["tier"] == tier]
        router = queue["router"]
        if router == R.RING_ALL:
            return [m["r"] for m in fit]
        if router == R.ROUND_ROBIN:
            after = [m for m in fit if m["order"] >= queue["cursor"]]
            chosen = (after or fit)[0]
            queue["cursor"] = chosen["order"] + 1
        elif router == R.LINEAR:
            chosen = fit[0]
        elif router == R.RANDOM:
            self.rng, value = R.splitmix64(self.rng)
            chosen = fit[value % len(fit)]
        else:
            def metric(m):
                rec = self.recipients[m["r"]]
                value = {
                    R.MOST_IDLE: rec["idle"],
                    R.LEAST_CALLS: rec["calls"],
                    R.LEAST_OFFERS: rec["offers"],
                    R.LEAST_TALK_TIME: rec["talk"],
                    R.MOST_SKILLED: -sum(rec["skills"].get(k, 0) for k in session["skills"]),
                }[router]
                return (value, rec["idle"], m["order"])
            chosen = min(fit, key=metric)
        return [chosen["r"]]

    def _free(self, rec, at_ms):
        rec.update(state=R.FREE, idle=at_ms, guard_until=at_ms + rec["guard"])

    def _decline(self, s, r, at_ms, missed):
        rec = self.recipients[r]
        rec.update(state=R.FREE, offer=-1, idle=at_ms)
        bounced = False
        if missed:
            rec["misses"] += 1
            if rec["limit"] and rec["misses"] >= rec["limit"]:
                rec["ready"] = False
                rec["misses"] = 0
                bounced = True
        return self._withdraw(s, r), bounced

    def _withdraw(self, s, r):
        session = self.sessions[s]
        session["offered"].remove(r)
        rec = self.recipients[r]
        if rec["state"] == R.OFFERED:
            rec.update(state=R.FREE, offer=-1)
        return not session["offered"]
