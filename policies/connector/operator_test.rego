package connector.operator_test

import data.connector.decision
import data.connector.operator

_input := {
	"phase": "negotiation",
	"now": "2026-12-01T10:00:00Z",
	"provider": {"id": "did:web:p"},
	"consumer": {"id": "did:web:c", "credentials": {}},
	"dataset": {"id": "ds", "classification": "general", "owner": "did:web:p"},
	"policy": {"permissions": [{"action": "use", "constraints": [], "duties": []}], "prohibitions": [], "obligations": []},
	"request": {"purpose": "research"},
	"usage": {"bytes": 0, "records": 0, "transfers": 0, "uses": 0},
}

_rules := {
	"a": {"deny": {"first reason"}},
	"b": {"deny": {"second reason", 42}},
	"c": {"other": {"not a reason"}},
}

test_every_local_deny_text_is_a_reason if {
	operator.reasons == ["first reason", "second reason"] with data.local as _rules
}

test_local_reasons_deny_the_decision if {
	d := decision.decision with input as _input with data.local as _rules
	d.allow == false
	"first reason" in d.reasons
	"second reason" in d.reasons
}

test_without_local_rules_nothing_changes if {
	d := decision.decision with input as _input with data.local as {}
	d.allow == true
	d.reasons == []
}
