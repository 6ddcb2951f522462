package connector.rules_test

import data.connector.rules

_in := {
	"phase": "negotiation",
	"now": "2026-11-21T10:00:00Z",
	"consumer": {"id": "did:web:consumer", "credentials": {"membership": true, "roles": ["research"], "region": "EU"}},
	"request": {"purpose": "research", "jurisdiction": "DE"},
	"usage": {"agreed_at": "2026-11-01T00:00:00Z"},
}

_purpose(op, r) := {"leftOperand": "purpose", "operator": op, "rightOperand": r}

_spatial(op, r) := {"leftOperand": "spatial", "operator": op, "rightOperand": r}

_role(r) := {"leftOperand": "tdsc:role", "operator": "eq", "rightOperand": r}

# --- atomic ------------------------------------------------------------------------------

test_unknown_left_operand_names_it if {
	r := rules.constraint({"leftOperand": "odrl:industry", "operator": "eq", "rightOperand": "x"}, "permission") with input as _in
	not r.ok
	r.text == "unknown leftOperand 'odrl:industry' (not in the policy profile)"
}

test_unknown_operator_names_it if {
	r := rules.constraint({"leftOperand": "purpose", "operator": "startsWith", "rightOperand": "re"}, "permission") with input as _in
	not r.ok
	r.text == "unknown operator 'startsWith' in a constraint on purpose"
}

test_malformed_atomic if {
	r := rules.constraint({"leftOperand": "purpose", "operator": "eq"}, "permission") with input as _in
	r.text == "malformed constraint on purpose: rightOperand missing"
	r2 := rules.constraint({"operator": "eq", "rightOperand": 1}, "permission") with input as _in
	r2.text == "malformed constraint: leftOperand missing or not a string"
	r3 := rules.constraint("purpose", "permission") with input as _in
	not r3.ok
}

test_every_operand_dispatches if {
	every c in [
		_purpose("eq", "research"),
		{"leftOperand": "dateTime", "operator": "lteq", "rightOperand": "2027-01-01T00:00:00Z"},
		{"leftOperand": "elapsedTime", "operator": "lteq", "rightOperand": "P30D"},
		{"leftOperand": "count", "operator": "lteq", "rightOperand": 1},
		{"leftOperand": "tdsc:useCount", "operator": "lteq", "rightOperand": 1},
		{"leftOperand": "tdsc:volumeBytes", "operator": "lteq", "rightOperand": 1},
		{"leftOperand": "tdsc:transferBytes", "operator": "lteq", "rightOperand": 1},
		{"leftOperand": "tdsc:volumeRecords", "operator": "lteq", "rightOperand": 1},
		_spatial("isAnyOf", ["EU"]),
		{"leftOperand": "tdsc:participant", "operator": "eq", "rightOperand": "did:web:consumer"},
		{"leftOperand": "tdsc:membership", "operator": "eq", "rightOperand": true},
		_role("research"),
	] {
		rules.constraint(c, "permission").ok with input as _in
	}
}

test_every_contract_operator_is_known if {
	every op in ["eq", "neq", "gt", "gteq", "lt", "lteq", "isAnyOf", "isAllOf", "isNoneOf", "isPartOf", "hasPart"] {
		op in rules.operators
	}

	# hasPart and isAllOf on roles, gt and gteq on time
	rules.constraint({"leftOperand": "tdsc:role", "operator": "hasPart", "rightOperand": ["research"]}, "permission").ok with input as _in
	rules.constraint({"leftOperand": "tdsc:role", "operator": "isAllOf", "rightOperand": ["research"]}, "permission").ok with input as _in
	rules.constraint({"leftOperand": "dateTime", "operator": "gt", "rightOperand": "2026-01-01T00:00:00Z"}, "permission").ok with input as _in
	rules.constraint({"leftOperand": "elapsedTime", "operator": "gteq", "rightOperand": "P1D"}, "permission").ok with input as _in
}

# --- logical -----------------------------------------------------------------------------

test_and if {
	r := rules.constraint({"and": [_purpose("eq", "research"), _spatial("isAnyOf", ["EU"])]}, "permission") with input as _in
	r.ok
	r.text == "purpose is 'research' and jurisdiction 'DE' (declared jurisdiction) is within EU"
	r2 := rules.constraint({"and": [_purpose("eq", "ads"), _spatial("isAnyOf", ["US"])]}, "permission") with input as _in
	not r2.ok
	r2.text == "purpose 'research' is not the permitted purpose 'ads'; jurisdiction 'DE' (declared jurisdiction) is not among the allowed jurisdictions: US"
}

test_or if {
	r := rules.constraint({"or": [_purpose("eq", "ads"), _role("research")]}, "permission") with input as _in
	r.ok
	r.text == "the consumer has the roles research"
	r2 := rules.constraint({"or": [_purpose("eq", "ads"), _role("admin")]}, "permission") with input as _in
	not r2.ok
	r2.text == "none of the alternatives holds: purpose 'research' is not the permitted purpose 'ads'; or the consumer's roles (research) do not include the required role admin"
}

test_xone if {
	one := rules.constraint({"xone": [_purpose("eq", "research"), _role("admin")]}, "permission") with input as _in
	one.ok
	both := rules.constraint({"xone": [_purpose("eq", "research"), _role("research")]}, "permission") with input as _in
	not both.ok
	both.text == "exactly one of the alternatives may hold, but 2 do: purpose is 'research'; the consumer has the roles research"
	none := rules.constraint({"xone": [_purpose("eq", "ads"), _role("admin")]}, "permission") with input as _in
	not none.ok
	startswith(none.text, "exactly one of the alternatives must hold, but none does: ")
}

test_nested_logical if {
	c := {"and": [{"or": [_spatial("eq", "CN"), {"and": [_spatial("isAnyOf", ["EU"]), _role("research")]}]}]}
	rules.constraint(c, "permission").ok with input as _in
	not rules.constraint(c, "permission").ok with input as object.union(_in, {"request": {"jurisdiction": "US"}})
}

test_nesting_deeper_than_four_levels if {
	c := {"and": [{"and": [{"and": [{"and": [{"and": [_purpose("eq", "research")]}]}]}]}]}
	r := rules.constraint(c, "permission") with input as _in
	not r.ok
	r.text == "logical constraints nest deeper than 4 levels"
	rules.constraint({"and": [{"and": [{"and": [{"and": [_purpose("eq", "research")]}]}]}]}, "permission").ok with input as _in
}

test_malformed_logical if {
	r := rules.constraint({"and": [], "or": []}, "permission") with input as _in
	r.text == "malformed logical constraint: exactly one of and, or, xone with a list of constraints"
	not rules.constraint({"or": _purpose("eq", "research")}, "permission").ok with input as _in
}

test_empty_logical if {
	rules.constraint({"and": []}, "permission").ok with input as _in
	not rules.constraint({"or": []}, "permission").ok with input as _in
	not rules.constraint({"xone": []}, "permission").ok with input as _in
}

test_deferred_purpose_holds_for_permissions_not_for_prohibitions if {
	catalog := object.union(_in, {"phase": "catalog", "request": {"purpose": null}})
	rules.constraint(_purpose("isAnyOf", ["research"]), "permission").ok with input as catalog
	not rules.constraint(_purpose("isAnyOf", ["marketing"]), "prohibition").ok with input as catalog
}

# --- rules -------------------------------------------------------------------------------

test_permission_reasons_one_per_failed_constraint if {
	p := {"action": "use", "constraints": [_purpose("eq", "ads"), _role("research"), _spatial("eq", "US")]}
	rules.permission_reasons(p) == [
		"purpose 'research' is not the permitted purpose 'ads'",
		"jurisdiction 'DE' (declared jurisdiction) is not the allowed jurisdiction 'US'",
	] with input as _in
}

test_permission_unknown_action if {
	rules.permission_reasons({"action": "sell"}) == ["unknown action 'sell' in a permission"] with input as _in
	rules.permission_reasons({}) == ["a permission without an action"] with input as _in
}

test_prohibition_matches if {
	p := {"action": "use", "constraints": [_purpose("isAnyOf", ["research", "marketing"])]}
	r := rules.prohibition_reason(p) with input as _in
	r == "use is prohibited when purpose 'research' is one of research, marketing"
}

test_prohibition_without_constraints_always_matches if {
	rules.prohibition_reason({"action": "use"}) == "use is prohibited" with input as _in
}

test_prohibition_not_matching if {
	not rules.prohibition_reason({"action": "use", "constraints": [_purpose("eq", "marketing"), _role("research")]}) with input as _in
}

test_holding_skips_alternatives if {
	p := {"constraints": [
		_purpose("eq", "x"),
		{"and": [_role("a"), {"or": [_role("b"), _role("c")]}]},
		{"xone": [_role("d")]},
	]}
	rules.holding(p) == [_purpose("eq", "x"), _role("a")]
}

# --- duties ------------------------------------------------------------------------------

test_duties_become_obligations if {
	rules.obligation({"action": "delete", "constraints": [{"leftOperand": "delayPeriod", "operator": "eq", "rightOperand": "PT2S"}]}) == {"action": "delete", "deadline": "2026-11-21T10:00:02Z"} with input as _in
	pay := [
		{"leftOperand": "payAmount", "operator": "eq", "rightOperand": 5},
		{"leftOperand": "unit", "operator": "eq", "rightOperand": "per-transfer"},
		{"leftOperand": "tdsc:currency", "operator": "eq", "rightOperand": "EUR"},
	]
	rules.obligation({"action": "compensate", "constraints": pay}) == {"action": "compensate", "constraints": pay} with input as _in
	rules.obligation({"action": "log"}) == {"action": "log", "constraints": []} with input as _in
	rules.duty_errors({"action": "compensate", "constraints": pay}) == [] with input as _in
	notify_once := {"action": "notify", "constraints": [{"leftOperand": "count", "operator": "lteq", "rightOperand": 1}]}
	rules.duty_errors(notify_once) == [] with input as _in
	rules.obligation(notify_once) == notify_once with input as _in
}

test_duty_errors if {
	rules.duty_errors({"action": "archive"}) == ["unknown duty action 'archive' (expected delete, compensate, log or notify)"] with input as _in
	rules.duty_errors({"action": "notify", "constraints": [{"leftOperand": "recipient", "operator": "eq", "rightOperand": "x"}]}) == ["unknown leftOperand 'recipient' in a notify duty"] with input as _in
	rules.duty_errors({"action": "compensate", "constraints": [{"leftOperand": "payAmount", "operator": "approx", "rightOperand": 5}]}) == ["unknown operator 'approx' in a compensate duty"] with input as _in
	rules.duty_errors({"action": "log", "constraints": [{"or": []}]}) == ["logical constraints are not supported in a log duty"] with input as _in
}

test_unknown_terms_anywhere if {
	policy := {
		"permissions": [
			{"action": "use", "constraints": [{"or": [{"leftOperand": "odrl:industry", "operator": "eq", "rightOperand": "x"}]}]},
			{"action": "read"},
		],
		"prohibitions": [{"action": "use", "constraints": [_purpose("matches", "x")]}],
		"obligations": [{"action": "archive"}],
	}
	rules.unknown_terms == [
		"unknown action 'read' in a permission",
		"unknown leftOperand 'odrl:industry' (not in the policy profile)",
		"unknown operator 'matches' in a constraint on purpose",
		"unknown duty action 'archive' (expected delete, compensate, log or notify)",
	] with input as object.union(_in, {"policy": policy})
}

test_no_unknown_terms if {
	policy := {"permissions": [{"action": "use", "constraints": [_purpose("eq", "x")], "duties": [{"action": "log"}]}]}
	rules.unknown_terms == [] with input as object.union(_in, {"policy": policy})
}

test_rules_that_are_not_objects if {
	inp := object.union(_in, {"policy": {"permissions": ["use"], "prohibitions": [7], "obligations": [null]}})
	rules.unknown_terms == [
		"a permission without an action",
		"a prohibition without an action",
		"a duty without an action",
	] with input as inp
}
