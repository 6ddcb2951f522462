package connector.who_test

import data.connector.who

_consumer(id, creds) := {"consumer": {"id": id, "credentials": creds}}

_c(l, op, r) := {"leftOperand": l, "operator": op, "rightOperand": r}

test_participant_eq if {
	c := _c("tdsc:participant", "eq", "did:web:consumer")
	who.evaluate(c).ok with input as _consumer("did:web:consumer", {})
	r := who.evaluate(c) with input as _consumer("did:web:other", {})
	not r.ok
	r.text == "participant did:web:other is not the permitted participant did:web:consumer"
}

test_participant_is_any_of if {
	c := _c("tdsc:participant", "isAnyOf", ["did:web:a", "did:web:b"])
	who.evaluate(c).ok with input as _consumer("did:web:b", {})
	r := who.evaluate(c) with input as _consumer("did:web:c", {})
	r.text == "participant did:web:c is not among the permitted participants: did:web:a, did:web:b"
}

test_participant_is_none_of if {
	c := _c("tdsc:participant", "isNoneOf", ["did:web:blocked"])
	who.evaluate(c).ok with input as _consumer("did:web:b", {})
	r := who.evaluate(c) with input as _consumer("did:web:blocked", {})
	not r.ok
	r.text == "participant did:web:blocked is excluded"
}

test_participant_unknown if {
	r := who.evaluate(_c("tdsc:participant", "neq", "did:web:x")) with input as {}
	not r.ok
	r.text == "the consumer's participant id is unknown"
}

test_membership if {
	c := _c("tdsc:membership", "eq", true)
	r := who.evaluate(c) with input as _consumer("did:web:a", {"membership": true})
	r.ok
	r.text == "the consumer holds a verified membership credential"
	r2 := who.evaluate(c) with input as _consumer("did:web:a", {"membership": false})
	not r2.ok
	r2.text == "the consumer holds no verified membership credential"
	not who.evaluate(c).ok with input as _consumer("did:web:a", {})

	# a claim that is not literally true is no membership
	not who.evaluate(c).ok with input as _consumer("did:web:a", {"membership": "yes"})
}

test_membership_string_operand_and_neq if {
	who.evaluate(_c("tdsc:membership", "eq", "true")).ok with input as _consumer("did:web:a", {"membership": true})
	who.evaluate(_c("tdsc:membership", "neq", true)).ok with input as _consumer("did:web:a", {})
	r := who.evaluate(_c("tdsc:membership", "eq", "maybe")) with input as _consumer("did:web:a", {})
	r.text == "tdsc:membership takes true or false, got 'maybe'"
}

test_role_eq if {
	c := _c("tdsc:role", "eq", "research")
	who.evaluate(c).ok with input as _consumer("did:web:a", {"roles": ["research", "admin"]})
	r := who.evaluate(c) with input as _consumer("did:web:a", {"roles": ["guest"]})
	not r.ok
	r.text == "the consumer's roles (guest) do not include the required role research"
	r2 := who.evaluate(c) with input as _consumer("did:web:a", {})
	r2.text == "the consumer's roles (none) do not include the required role research"
}

test_role_is_any_of if {
	c := _c("tdsc:role", "isAnyOf", ["research", "education"])
	who.evaluate(c).ok with input as _consumer("did:web:a", {"roles": ["education"]})
	r := who.evaluate(c) with input as _consumer("did:web:a", {"roles": ["guest"]})
	r.text == "the consumer's roles (guest) include none of the required roles: education, research"
}

test_role_is_all_of if {
	c := _c("tdsc:role", "isAllOf", ["research", "auditor"])
	who.evaluate(c).ok with input as _consumer("did:web:a", {"roles": ["auditor", "research", "x"]})
	r := who.evaluate(c) with input as _consumer("did:web:a", {"roles": ["research"]})
	not r.ok
	r.text == "the consumer's roles (research) lack the required roles: auditor"
}

test_role_is_none_of_and_is_part_of if {
	who.evaluate(_c("tdsc:role", "isNoneOf", ["guest"])).ok with input as _consumer("did:web:a", {"roles": ["research"]})
	r := who.evaluate(_c("tdsc:role", "isNoneOf", ["guest"])) with input as _consumer("did:web:a", {"roles": ["guest"]})
	r.text == "the consumer has the excluded roles: guest"
	who.evaluate(_c("tdsc:role", "isPartOf", ["a", "b"])).ok with input as _consumer("did:web:a", {"roles": ["a"]})
	not who.evaluate(_c("tdsc:role", "isPartOf", ["a", "b"])).ok with input as _consumer("did:web:a", {"roles": ["a", "c"]})
}

test_single_role_string if {
	who.evaluate(_c("tdsc:role", "hasPart", "research")).ok with input as _consumer("did:web:a", {"roles": "research"})
}

test_unsupported_operator if {
	r := who.evaluate(_c("tdsc:membership", "isAnyOf", [true])) with input as {}
	r.text == "operator 'isAnyOf' is not supported for leftOperand 'tdsc:membership'"
}
