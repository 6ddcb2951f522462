# Purpose: the consumer's declared purpose (input.request.purpose) against the permitted or
# prohibited purposes of a `purpose` constraint.
package connector.purpose

import data.connector.util

operands := {"purpose"}

operators := {"eq", "neq", "isAnyOf", "isPartOf", "isNoneOf"}

declared := p if {
	p := input.request.purpose
	is_string(p)
	p != ""
}

# evaluate(c) is {"ok", "text"[, "deferred"]} for an atomic constraint on `purpose`.
evaluate(c) := util.unsupported(c) if {
	not c.operator in operators
} else := {"ok": true, "deferred": true, "text": "no purpose declared yet (catalog)"} if {
	# browsing the catalog carries no purpose: decided at negotiation
	not declared
	input.phase == "catalog"
} else := util.fail(_undeclared(c)) if {
	not declared
} else := util.result(_ok(c.operator, declared, c.rightOperand), _text(c.operator, declared, c.rightOperand))

_ok(op, p, r) if _holds(op, p, r)

else := false

_undeclared(c) := util.cat(["no purpose declared; permitted purposes: ", util.join(c.rightOperand)]) if {
	c.operator in {"eq", "isAnyOf", "isPartOf"}
} else := util.cat(["no purpose declared (a purpose other than ", util.join(c.rightOperand), " is required)"])

_holds("eq", p, r) if p == r

_holds("neq", p, r) if p != r

_holds(op, p, r) if {
	op in {"isAnyOf", "isPartOf"}
	p in util.as_list(r)
}

_holds("isNoneOf", p, r) if not p in util.as_list(r)

_text(op, p, r) := t if {
	_holds(op, p, r)
	t := _fact(op, p, r)
} else := _violation(op, p, r)

_fact("eq", p, _) := util.cat(["purpose is ", util.quoted(p)])

_fact("neq", p, r) := util.cat(["purpose ", util.quoted(p), " is not ", util.quoted(r)])

_fact(op, p, r) := util.cat(["purpose ", util.quoted(p), " is one of ", util.join(r)]) if op in {"isAnyOf", "isPartOf"}

_fact("isNoneOf", p, r) := util.cat(["purpose ", util.quoted(p), " is none of ", util.join(r)])

_violation("eq", p, r) := util.cat(["purpose ", util.quoted(p), " is not the permitted purpose ", util.quoted(r)])

_violation("neq", p, _) := util.cat(["purpose ", util.quoted(p), " is excluded"])

_violation(op, p, r) := util.cat(["purpose ", util.quoted(p), " is not among the permitted purposes: ", util.join(r)]) if {
	op in {"isAnyOf", "isPartOf"}
}

_violation("isNoneOf", p, r) := util.cat(["purpose ", util.quoted(p), " is among the excluded purposes: ", util.join(r)])
