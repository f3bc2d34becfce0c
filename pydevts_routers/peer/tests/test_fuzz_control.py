"""Property-based tests: the peer router's control messages parse into bounded members or raise."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydevts.members import Member
from pydevts_peer.state import MAX_KNOWN, PeerState

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
member_like = st.fixed_dictionaries(
    {
        "id": st.text(max_size=20) | json_values,
        "address": st.sampled_from(["h:1", "1.2.3.4:7", "x"]) | json_values,
    },
    optional={"tags": json_values},
)
messages = json_values | st.fixed_dictionaries(
    {"t": st.sampled_from(["sync", "intro", "leave", "other"])},
    optional={"members": st.lists(member_like, max_size=8), "member": member_like},
)


@given(messages)
@settings(max_examples=600, deadline=None)
def test_control_messages_act_or_raise_the_errors_the_router_turns_into_a_closed_link(message: Any) -> None:
    state = PeerState(Member("me", "127.0.0.1:1", {}))
    try:
        state.control("peer", message, 0.0)
    except (ValueError, KeyError, TypeError):
        return
    for entry in state.known.values():
        member = entry.member
        assert 0 < len(member.id.encode()) <= 255 and member.id.isprintable()
        assert "\x00" not in member.address
    assert len(state.known) <= MAX_KNOWN
