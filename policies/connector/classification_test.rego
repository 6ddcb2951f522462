package connector.classification_test

import data.connector.classification

_in(level, consumer) := {
	"phase": "negotiation",
	"provider": {"id": "did:web:provider"},
	"consumer": {"id": consumer},
	"dataset": {"id": "urn:ds", "classification": level, "owner": "did:web:provider"},
	"request": {"purpose": "research"},
	"policy": {"permissions": [], "obligations": []},
}

_spatial := {"leftOperand": "spatial", "operator": "isAnyOf", "rightOperand": ["CN"]}

_good := {"action": "use", "constraints": [_spatial], "duties": [{"action": "log"}]}

test_general_follows_its_offer if {
	classification.reasons == [] with input as _in("general", "did:web:consumer")
	classification.permission_reasons({"action": "use"}) == [] with input as _in("general", "did:web:consumer")
}

test_missing_classification_is_general if {
	classification.level == "general" with input as {"dataset": {"id": "urn:ds"}}
	classification.level == "general" with input as {"dataset": {"classification": null}}
}

test_core_never_leaves_its_owner if {
	classification.reasons == ["dataset urn:ds is core data and is never offered outside its owner did:web:provider"] with input as _in("core", "did:web:consumer")
}

test_core_allowed_for_its_owner if {
	classification.reasons == [] with input as _in("core", "did:web:provider")
}

test_core_owner_defaults_to_provider if {
	inp := {"provider": {"id": "did:web:p"}, "consumer": {"id": "did:web:p"}, "dataset": {"id": "urn:ds", "classification": "core"}}
	classification.reasons == [] with input as inp
	classification.reasons != [] with input as object.union(inp, {"consumer": {"id": "did:web:c"}})
}

test_core_denied_when_consumer_unknown if {
	count(classification.reasons) == 1 with input as {"dataset": {"id": "urn:ds", "classification": "core", "owner": "did:web:p"}}
}

test_unknown_classification if {
	classification.reasons == ["unknown data classification 'secret' (expected general, important or core)"] with input as _in("secret", "did:web:c")
}

test_important_with_everything if {
	classification.permission_reasons(_good) == [] with input as _in("important", "did:web:c")
}

test_important_needs_everything if {
	classification.permission_reasons({"action": "use"}) == [
		"important data needs a declared purpose; the request declares none",
		"important data needs an allowed jurisdiction; the offer has no spatial constraint",
		"important data needs a log duty; the policy has none",
	] with input as object.union(_in("important", "did:web:c"), {"request": {"purpose": ""}})
}

test_important_purpose_not_needed_while_browsing_the_catalog if {
	inp := object.union(_in("important", "did:web:c"), {"phase": "catalog", "request": {}})
	classification.permission_reasons(_good) == [] with input as inp
}

test_important_spatial_inside_or_does_not_count if {
	p := {"action": "use", "constraints": [{"or": [_spatial, {"leftOperand": "purpose", "operator": "eq", "rightOperand": "x"}]}], "duties": [{"action": "log"}]}
	classification.permission_reasons(p) == ["important data needs an allowed jurisdiction; the offer has no spatial constraint"] with input as _in("important", "did:web:c")
	q := {"action": "use", "constraints": [{"and": [_spatial]}], "duties": [{"action": "log"}]}
	classification.permission_reasons(q) == [] with input as _in("important", "did:web:c")
}

test_important_log_duty_may_be_a_policy_obligation if {
	inp := object.union(_in("important", "did:web:c"), {"policy": {"obligations": [{"action": "log"}]}})
	classification.permission_reasons({"action": "use", "constraints": [_spatial]}) == [] with input as inp
}

test_core_without_any_owner if {
	classification.reasons == ["dataset urn:ds is core data and is never offered outside its owner (unknown)"] with input as {"dataset": {"id": "urn:ds", "classification": "core"}}
}
