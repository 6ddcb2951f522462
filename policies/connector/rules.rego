# Rules: ODRL permissions, prohibitions and duties. Evaluates atomic constraints through the
# module of their leftOperand, logical constraints (and / or / xone), a prohibition that
# matches denies, a duty becomes an obligation, and any term outside the profile denies with a
# reason naming it.
package connector.rules

import data.connector.classification
import data.connector.counting
import data.connector.deletion
import data.connector.purpose
import data.connector.timing
import data.connector.util
import data.connector.volume
import data.connector.where
import data.connector.who

# The policy profile: every term a constraint, rule or duty may use (docs/policy-contract.md).
operators := {"eq", "neq", "gt", "gteq", "lt", "lteq", "isAnyOf", "isAllOf", "isNoneOf", "isPartOf", "hasPart"}

logical_operators := {"and", "or", "xone"}

operands := ((((purpose.operands | volume.operands) | counting.operands) | timing.operands) | who.operands) | where.operands

actions := {"use"}

duty_actions := {"delete", "compensate", "log", "notify"}

duty_operands := deletion.operands | {"payAmount", "unit", "tdsc:currency", "tdsc:freeQuota", "count"}

# --- atomic constraints ------------------------------------------------------------------

_dispatch(c) := purpose.evaluate(c) if c.leftOperand in purpose.operands

_dispatch(c) := volume.evaluate(c) if c.leftOperand in volume.operands

_dispatch(c) := counting.evaluate(c) if c.leftOperand in counting.operands

_dispatch(c) := timing.evaluate(c) if c.leftOperand in timing.operands

_dispatch(c) := who.evaluate(c) if c.leftOperand in who.operands

_dispatch(c) := where.evaluate(c) if c.leftOperand in where.operands

unknown_operand(l) := util.cat(["unknown leftOperand ", util.quoted(l), " (not in the policy profile)"])

unknown_operator(c) := util.cat(["malformed constraint on ", c.leftOperand, ": operator missing"]) if {
	object.get(c, "operator", null) == null
} else := util.cat(["unknown operator ", util.quoted(c.operator), " in a constraint on ", c.leftOperand])

# atomic(c) is {"ok", "text"[, "deferred"]} for an atomic constraint.
atomic(c) := util.fail("malformed constraint: expected an object with leftOperand, operator and rightOperand") if {
	not is_object(c)
} else := util.fail("malformed constraint: leftOperand missing or not a string") if {
	not is_string(object.get(c, "leftOperand", null))
} else := util.fail(unknown_operand(c.leftOperand)) if {
	not c.leftOperand in operands
} else := util.fail(unknown_operator(c)) if {
	not object.get(c, "operator", null) in operators
} else := util.fail(util.cat(["malformed constraint on ", c.leftOperand, ": rightOperand missing"])) if {
	not "rightOperand" in object.keys(c)
} else := _dispatch(c)

# A constraint that cannot be decided yet holds for a permission and does not match for a
# prohibition.
_leaf(c, mode) := _settled(atomic(c), mode)

_settled(r, mode) := {"ok": mode == "permission", "text": r.text} if {
	object.get(r, "deferred", false) == true
} else := r

# --- logical constraints -----------------------------------------------------------------

_logical_keys(c) := {k | some k in object.keys(c); k in logical_operators}

_kind(c) := "logical" if {
	is_object(c)
	count(_logical_keys(c)) == 1
	some op in _logical_keys(c)
	is_array(c[op])
} else := "malformed" if {
	is_object(c)
	count(_logical_keys(c)) > 0
} else := "atomic"

_op(c) := op if some op in _logical_keys(c)

_malformed := util.fail("malformed logical constraint: exactly one of and, or, xone with a list of constraints")

_too_deep := util.fail("logical constraints nest deeper than 4 levels")

# Rego has no recursion, so nesting is unrolled to 4 levels. Each level dispatches on the
# constraint's kind, computed once (function results are not cached between calls).
_eval0(c, mode) := _eval0k(_kind(c), c, mode)

_eval0k("atomic", c, mode) := _leaf(c, mode)

_eval0k("logical", _, _) := _too_deep

_eval0k("malformed", _, _) := _malformed

_eval1(c, mode) := _eval1k(_kind(c), c, mode)

_eval1k("atomic", c, mode) := _leaf(c, mode)

_eval1k("logical", c, mode) := _combine(op, [_eval0(m, mode) | some m in c[op]]) if op := _op(c)

_eval1k("malformed", _, _) := _malformed

_eval2(c, mode) := _eval2k(_kind(c), c, mode)

_eval2k("atomic", c, mode) := _leaf(c, mode)

_eval2k("logical", c, mode) := _combine(op, [_eval1(m, mode) | some m in c[op]]) if op := _op(c)

_eval2k("malformed", _, _) := _malformed

_eval3(c, mode) := _eval3k(_kind(c), c, mode)

_eval3k("atomic", c, mode) := _leaf(c, mode)

_eval3k("logical", c, mode) := _combine(op, [_eval2(m, mode) | some m in c[op]]) if op := _op(c)

_eval3k("malformed", _, _) := _malformed

_eval4(c, mode) := _eval4k(_kind(c), c, mode)

_eval4k("atomic", c, mode) := _leaf(c, mode)

_eval4k("logical", c, mode) := _combine(op, [_eval3(m, mode) | some m in c[op]]) if op := _op(c)

_eval4k("malformed", _, _) := _malformed

# constraint(c, mode) evaluates an atomic or logical constraint; mode is "permission" or
# "prohibition" (it only decides constraints that cannot be decided yet).
constraint(c, mode) := _eval4(c, mode)

_texts(rs, ok) := [r.text | some r in rs; r.ok == ok]

_combine("and", rs) := util.result(true, concat(" and ", _texts(rs, true))) if {
	count(_texts(rs, false)) == 0
} else := util.fail(concat("; ", _texts(rs, false)))

_combine("or", rs) := util.result(true, _texts(rs, true)[0]) if {
	count(_texts(rs, true)) > 0
} else := util.fail(util.cat(["none of the alternatives holds: ", concat("; or ", _texts(rs, false))]))

_combine("xone", rs) := util.result(true, _texts(rs, true)[0]) if {
	count(_texts(rs, true)) == 1
} else := util.fail(util.cat(["exactly one of the alternatives must hold, but none does: ", concat("; or ", _texts(rs, false))])) if {
	count(_texts(rs, true)) == 0
} else := util.fail(util.cat([
	"exactly one of the alternatives may hold, but ", util.number_text(count(_texts(rs, true))),
	" do: ", concat("; ", _texts(rs, true)),
]))

# --- rules -------------------------------------------------------------------------------

_list(x) := x if is_array(x)

else := []

# Rules and duties that are not objects count as ones without an action (and so deny).
_objects(x) := [o | some v in _list(x); o := _object(v)]

_object(v) := v if is_object(v)

else := {}

permissions := _objects(object.get(input, ["policy", "permissions"], []))

prohibitions := _objects(object.get(input, ["policy", "prohibitions"], []))

policy_obligations := _objects(object.get(input, ["policy", "obligations"], []))

constraints_of(rule) := _list(object.get(rule, "constraints", []))

duties_of(rule) := _objects(object.get(rule, "duties", []))

# holding(rule) lists the atomic constraints of a rule that must all hold for it (outside or /
# xone), for limits and for the classification rules.
holding(rule) := [v |
	walk(constraints_of(rule), [path, v])
	is_object(v)
	is_string(v.leftOperand)
	not _under_alternative(path)
]

_under_alternative(path) if {
	some k in path
	k in {"or", "xone"}
}

# permission_reasons(p) lists why permission p does not allow (empty: it allows).
permission_reasons(p) := array.concat(
	array.concat(_action_reasons(p, "permission"), [r.text |
		some c in constraints_of(p)
		r := constraint(c, "permission")
		not r.ok
	]),
	array.concat([e | some d in duties_of(p); some e in duty_errors(d)], classification.permission_reasons(p)),
)

_action_reasons(rule, _) := [] if rule.action in actions

_action_reasons(rule, what) := [unknown_action(rule, what)] if not object.get(rule, "action", null) in actions

unknown_action(rule, what) := util.cat(["a ", what, " without an action"]) if {
	object.get(rule, "action", null) == null
} else := util.cat(["unknown action ", util.quoted(rule.action), " in a ", what])

# prohibition_reason(p) is defined when prohibition p matches the request: its action covers
# every phase and all its constraints hold.
prohibition_reason(p) := "use is prohibited" if {
	p.action in actions
	count(constraints_of(p)) == 0
} else := util.cat(["use is prohibited when ", concat(" and ", [r.text | some r in rs])]) if {
	p.action in actions
	rs := [constraint(c, "prohibition") | some c in constraints_of(p)]
	every r in rs {
		r.ok
	}
}

# --- duties ------------------------------------------------------------------------------

unknown_duty_action(d) := "a duty without an action" if {
	object.get(d, "action", null) == null
} else := util.cat(["unknown duty action ", util.quoted(d.action), " (expected delete, compensate, log or notify)"])

# duty_errors(d) lists why duty d cannot become an obligation.
duty_errors(d) := [unknown_duty_action(d)] if {
	not object.get(d, "action", null) in duty_actions
} else := deletion.errors(d) if {
	d.action == "delete"
} else := [e | some c in constraints_of(d); some e in _passed_on_errors(d.action, c)]

_passed_on_errors(action, c) := [util.cat(["logical constraints are not supported in a ", action, " duty"])] if {
	not is_string(object.get(c, "leftOperand", null))
} else := [util.cat(["unknown leftOperand ", util.quoted(c.leftOperand), " in a ", action, " duty"])] if {
	not c.leftOperand in duty_operands
} else := [util.cat(["malformed constraint on ", c.leftOperand, " in a ", action, " duty: operator missing"])] if {
	object.get(c, "operator", null) == null
} else := [util.cat(["unknown operator ", util.quoted(c.operator), " in a ", action, " duty"])] if {
	not c.operator in operators
} else := [util.cat(["malformed constraint on ", c.leftOperand, " in a ", action, " duty: rightOperand missing"])] if {
	not "rightOperand" in object.keys(c)
} else := []

# obligation(d) is the obligation duty d becomes: a delete duty with its deadline resolved,
# other duties with their constraints passed on (compensate: payAmount / unit / tdsc:currency).
obligation(d) := deletion.obligation(d) if d.action == "delete"

obligation(d) := {"action": d.action, "constraints": constraints_of(d)} if {
	d.action in duty_actions
	d.action != "delete"
}

# --- unknown terms anywhere in the policy -------------------------------------------------

# unknown_terms lists every term outside the profile, wherever it appears (also in rules
# that do not decide this request): nothing is ever silently allowed.
unknown_terms := array.concat(
	array.concat(
		[unknown_action(p, "permission") | some p in permissions; not object.get(p, "action", null) in actions],
		[unknown_action(p, "prohibition") | some p in prohibitions; not object.get(p, "action", null) in actions],
	),
	array.concat(
		[t | some rule in array.concat(permissions, prohibitions); some t in _constraint_terms(rule)],
		[e | some d in policy_obligations; some e in duty_errors(d)],
	),
)

_constraint_terms(rule) := [t |
	walk(constraints_of(rule), [_, v])
	is_object(v)
	some t in _term_errors(v)
]

_term_errors(v) := [unknown_operand(v.leftOperand)] if {
	is_string(v.leftOperand)
	not v.leftOperand in operands
} else := [unknown_operator(v)] if {
	is_string(v.leftOperand)
	not object.get(v, "operator", null) in operators
} else := []
