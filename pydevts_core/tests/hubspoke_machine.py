"""A deliberately bad router machine for the simulated contract's tests: hub and spokes (not shipped).

Written from the machine docs (:mod:`pydevts.routing.machine`): every node
links only to the first node it links with that started before it (the one
it joined through: its *hub*; of two started at once, the smaller id; start
times are compared across nodes, which one clock makes right: the
simulator's); a node that first meets a younger node is a hub itself. A
spoke sends everything to its hub; the hub relays broadcasts and sends
(``relays = True``: ``Send`` and ``Deliver``) and tells its spokes the
roster. It passes the easy rules but loses the cluster when the hub dies,
and a node that joins through a spoke is known to that spoke only.

Router frames: ``UP`` + JSON start time; ``ROSTER`` + JSON ``[[id, address], ...]``;
``LEAVE``; ``RELAY`` + dest + origin (each one length byte then UTF-8;
dest ``*``: everyone) + a core frame.
"""

from __future__ import annotations

import json

from pydevts.errors import UnknownNodeError
from pydevts.members import Member, MemberState
from pydevts.routing.actions import Action, CloseLink, Control, Deliver, Send, SetMemberState, UpdateMember
from pydevts.routing.machine import RouterMachine

UP, ROSTER, LEAVE, RELAY = 0x48, 0x49, 0x4A, 0x4B
EVERYONE = "*"


def _name(text: str) -> bytes:
    raw = text.encode()
    return bytes((len(raw),)) + raw


class HubSpokeMachine(RouterMachine):
    name = "hubspoke"
    relays = True

    def __init__(self) -> None:
        self.me, self.started = Member("", ""), 0.0
        self.hub: str | None = None  # undecided until the first UP; our own id if we are the hub
        self.links: dict[str, Member] = {}
        self.known: dict[str, Member] = {}  # alive members but us
        self.left: set[str] = set()

    def start(self, now: float, local: Member, cluster: str) -> list[Action]:
        self.me, self.started = local, now
        return []

    def _roster(self) -> list[Action]:
        if self.hub != self.me.id:
            return []
        body = json.dumps([[m.id, m.address] for m in (self.me, *self.known.values())]).encode()
        return [Control(p, bytes((ROSTER,)) + body) for p in self.links]

    def link_up(self, now: float, peer: Member) -> list[Action]:
        self.links[peer.id] = self.known[peer.id] = peer
        up = Control(peer.id, bytes((UP,)) + json.dumps(self.started).encode())
        return [UpdateMember(peer), up, *self._roster()]

    def link_down(self, now: float, peer_id: str, *, resumable: bool) -> list[Action]:
        if resumable:
            return []  # the host redials
        self.links.pop(peer_id, None)
        gone = [peer_id] if self.known.pop(peer_id, None) else []
        if peer_id == self.hub:  # lost the hub: nobody else is reachable now
            gone += list(self.known)
            self.known.clear()
        state = MemberState.LEFT if peer_id in self.left else MemberState.FAILED
        return [
            *(SetMemberState(m, state if m == peer_id else MemberState.FAILED) for m in gone),
            *self._roster(),
        ]

    def receive(self, now: float, peer_id: str, frame: bytes) -> list[Action]:
        kind = frame[0]
        if kind == UP:
            if self.hub is None:
                theirs, mine = float(json.loads(frame[1:])), self.started
                older = theirs < mine or (theirs == mine and peer_id < self.me.id)  # (or started together)
                self.hub = peer_id if older else self.me.id
                return self._roster()
            return []
        if kind == ROSTER and peer_id == self.hub:
            listed = {i: Member(i, a) for i, a in json.loads(frame[1:]) if i != self.me.id}
            actions: list[Action] = [UpdateMember(m) for i, m in listed.items() if i not in self.known]
            actions += [SetMemberState(i, MemberState.LEFT) for i in self.known if i not in listed]
            self.known = {**listed, **{i: m for i, m in self.links.items() if i in listed}}
            return actions
        if kind == LEAVE:
            self.left.add(peer_id)
            self.links.pop(peer_id, None)
            self.known.pop(peer_id, None)
            return [
                SetMemberState(peer_id, MemberState.LEFT),
                CloseLink(peer_id, "left", linger=True),
                *self._roster(),
            ]
        if kind == RELAY:
            n = frame[1]
            dest, m = frame[2 : 2 + n].decode(), frame[2 + n]
            origin, inner = frame[3 + n : 3 + n + m].decode(), frame[3 + n + m :]
            actions = []
            if self.hub == self.me.id:
                actions += [
                    Send(p, frame, origin, inner) for p in self.links if p != origin and dest in (EVERYONE, p)
                ]
            if dest in (EVERYONE, self.me.id):
                actions.append(Deliver(origin, inner))
            return actions
        if kind == ROSTER:
            return []  # from a hub that is not ours
        raise ValueError(f"unknown router frame kind 0x{kind:02x}")

    def leave(self, now: float) -> list[Action]:
        return [Control(p, bytes((LEAVE,))) for p in self.links]

    def _relay(self, dest: str, frame: bytes) -> bytes:
        return bytes((RELAY,)) + _name(dest) + _name(self.me.id) + frame

    def send(self, now: float, dest: str, frame: bytes) -> list[Action]:
        if dest in self.links:
            return [Send(dest, frame)]
        if self.hub is not None and self.hub in self.links and dest in self.known:
            return [Send(self.hub, self._relay(dest, frame))]
        raise UnknownNodeError(dest, "not a spoke of this hub")

    def broadcast(self, now: float, frame: bytes) -> list[Action]:
        if self.hub == self.me.id:
            return [Send(p, frame) for p in self.links]
        return [Send(self.hub, self._relay(EVERYONE, frame))] if self.hub in self.links else []
