package local.example_test

import data.connector.decision
import data.local.example

_open := {"permissions": [{"action": "use", "constraints": [], "duties": []}], "prohibitions": [], "obligations": []}

_input(consumer, classification, now) := {
	"phase": "transfer",
	"now": now,
	"provider": {"id": "did:web:p"},
	"consumer": {"id": consumer, "credentials": {}},
	"dataset": {"id": "ds", "classification": classification, "owner": "did:web:p"},
	"policy": _open,
	"request": {"purpose": "research"},
	"usage": {"bytes": 0, "records": 0, "transfers": 0, "uses": 0},
}

test_a_blocked_consumer_is_refused_with_the_reason if {
	d := decision.decision with input as _input("did:web:refused.example.invalid", "general", "2026-12-01T10:00:00Z")
	d.allow == false
	d.reasons == ["consumer did:web:refused.example.invalid is blocked by the operator"]
}

test_any_other_consumer_is_not_concerned if {
	d := decision.decision with input as _input("did:web:c", "general", "2026-12-01T10:00:00Z")
	d.allow == true
	count(example.deny) == 0 with input as _input("did:web:c", "general", "2026-12-01T10:00:00Z")
}

test_as_shipped_no_data_is_bound_to_working_hours if {
	count(example.deny) == 0 with input as _input("did:web:c", "important", "2026-12-01T23:30:00Z")
}

test_important_data_at_night_is_refused_once_named if {
	d := decision.decision with input as _input("did:web:c", "important", "2026-12-01T23:30:00Z")
		with example.working_hours_only as {"important"}
	"important data is served only between 06:00 and 20:00 UTC" in d.reasons
}

test_important_data_by_day_is_not_refused_by_the_rule if {
	count(example.deny) == 0 with input as _input("did:web:c", "important", "2026-12-01T10:00:00Z")
		with example.working_hours_only as {"important"}
}

test_general_data_at_night_is_served_once_important_is_named if {
	d := decision.decision with input as _input("did:web:c", "general", "2026-12-01T23:30:00Z")
		with example.working_hours_only as {"important"}
	d.allow == true
}
