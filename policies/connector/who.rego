# Who: the consumer's participant id and the membership and role claims of its verified
# credentials (input.consumer.credentials, filled by the connector after verification).
package connector.who

import data.connector.util

operands := {"tdsc:participant", "tdsc:membership", "tdsc:role"}

_operators := {
	"tdsc:participant": {"eq", "neq", "isAnyOf", "isPartOf", "isNoneOf"},
	"tdsc:membership": {"eq", "neq"},
	"tdsc:role": {"eq", "neq", "isAnyOf", "isAllOf", "hasPart", "isPartOf", "isNoneOf"},
}

participant := p if {
	p := input.consumer.id
	is_string(p)
	p != ""
}

member if input.consumer.credentials.membership == true

# roles is the set of role claims (a single string counts as one role).
roles := {r | some r in util.as_list(_claimed_roles); is_string(r)}

_claimed_roles := object.get(input, ["consumer", "credentials", "roles"], [])

# evaluate(c) is {"ok", "text"} for an atomic constraint on who the consumer is.
evaluate(c) := util.unsupported(c) if {
	not c.operator in _operators[c.leftOperand]
} else := _evaluate(c.leftOperand, c.operator, c.rightOperand)

# --- participant -------------------------------------------------------------------------

_evaluate("tdsc:participant", _, _) := util.fail("the consumer's participant id is unknown") if not participant

_evaluate("tdsc:participant", op, r) := util.result(ok, text) if {
	ok := _participant_ok(op, participant, r)
	text := _participant_text(ok, op, participant, r)
}

_participant_ok(op, p, r) if {
	op == "eq"
	p == r
} else if {
	op == "neq"
	p != r
} else if {
	op in {"isAnyOf", "isPartOf"}
	p in util.as_list(r)
} else if {
	op == "isNoneOf"
	not p in util.as_list(r)
} else := false

_participant_text(true, _, p, _) := util.cat(["participant is ", p])

_participant_text(false, "eq", p, r) := util.cat(["participant ", p, " is not the permitted participant ", util.text(r)])

_participant_text(false, op, p, r) := util.cat(["participant ", p, " is not among the permitted participants: ", util.join(r)]) if {
	op in {"isAnyOf", "isPartOf"}
}

_participant_text(false, op, p, _) := util.cat(["participant ", p, " is excluded"]) if op in {"neq", "isNoneOf"}

# --- membership --------------------------------------------------------------------------

_evaluate("tdsc:membership", _, r) := util.fail(util.cat(["tdsc:membership takes true or false, got ", util.quoted(r)])) if {
	not _boolean(r)
}

_evaluate("tdsc:membership", op, r) := util.result(ok, text) if {
	want := _boolean(r) == (op == "eq")
	ok := _is_member == want
	text := _membership_text(ok, want)
}

_boolean(r) := r if is_boolean(r)

_boolean("true") := true

_boolean("false") := false

_is_member if member

else := false

_membership_text(true, true) := "the consumer holds a verified membership credential"

_membership_text(true, false) := "the consumer is not a member"

_membership_text(false, true) := "the consumer holds no verified membership credential"

_membership_text(false, false) := "the policy excludes members, and the consumer is one"

# --- roles -------------------------------------------------------------------------------

_evaluate("tdsc:role", op, r) := util.result(ok, text) if {
	wanted := {x | some x in util.as_list(r)}
	ok := _role_ok(op, roles, wanted)
	text := _role_text(ok, op, roles, wanted)
}

_role_ok(op, have, want) if {
	op in {"eq", "isAnyOf"}
	count(have & want) > 0
} else if {
	op in {"isAllOf", "hasPart"}
	count(want - have) == 0
} else if {
	op in {"neq", "isNoneOf"}
	count(have & want) == 0
} else if {
	op == "isPartOf"
	count(have) > 0
	count(have - want) == 0
} else := false

_role_text(true, _, have, _) := util.cat(["the consumer has the roles ", util.join(have)])

_role_text(false, "eq", have, want) := util.cat(["the consumer's roles (", _listed(have), ") do not include the required role ", util.join(want)])

_role_text(false, "isAnyOf", have, want) := util.cat(["the consumer's roles (", _listed(have), ") include none of the required roles: ", util.join(want)])

_role_text(false, op, have, want) := util.cat(["the consumer's roles (", _listed(have), ") lack the required roles: ", util.join(want - have)]) if {
	op in {"isAllOf", "hasPart"}
}

_role_text(false, op, have, want) := util.cat(["the consumer has the excluded roles: ", util.join(have & want)]) if {
	op in {"neq", "isNoneOf"}
}

_role_text(false, "isPartOf", have, want) := util.cat(["the consumer's roles (", _listed(have), ") are not all among: ", util.join(want)])

_listed(roles) := "none" if count(roles) == 0

else := util.join(roles)
