# Time: the validity window (`dateTime` against input.now) and the time since the agreement or
# its first use (`elapsedTime`, an ISO 8601 duration).
package connector.timing

import data.connector.util

operands := {"dateTime", "elapsedTime"}

operators := {"lt", "lteq", "gt", "gteq"}

# evaluate(c) is {"ok", "text"} for an atomic constraint on `dateTime` or `elapsedTime`.
evaluate(c) := util.unsupported(c) if {
	not c.operator in operators
} else := util.fail(util.cat(["the decision input has no valid 'now' time stamp (got ", util.quoted(object.get(input, "now", null)), ")"])) if {
	not util.now_ns
} else := _evaluate(c.leftOperand, c.operator, c.rightOperand)

_before(op, a, b) if {
	op == "lt"
	a < b
}

_before(op, a, b) if {
	op == "lteq"
	a <= b
}

_before(op, a, b) if {
	op == "gt"
	a > b
}

_before(op, a, b) if {
	op == "gteq"
	a >= b
}

_ok(op, a, b) if _before(op, a, b)

else := false

# --- dateTime: now against a fixed instant ------------------------------------------------

_evaluate("dateTime", op, r) := util.result(ok, _window_text(ok, op, r)) if {
	at := util.parse_time(r)
	ok := _ok(op, util.now_ns, at)
} else := util.fail(util.cat(["invalid dateTime ", util.quoted(r), " (expected an RFC 3339 time stamp with zone)"]))

_window_text(true, "lt", r) := util.cat(["it is before ", r])

_window_text(true, "lteq", r) := util.cat(["it is not after ", r])

_window_text(true, "gt", r) := util.cat(["it is after ", r])

_window_text(true, "gteq", r) := util.cat(["it is not before ", r])

_window_text(false, "lt", r) := util.cat(["use is permitted only before ", r, "; it is now ", input.now])

_window_text(false, "lteq", r) := util.cat(["use is permitted until ", r, "; it is now ", input.now])

_window_text(false, "gt", r) := util.cat(["use is permitted only after ", r, "; it is now ", input.now])

_window_text(false, "gteq", r) := util.cat(["use is permitted from ", r, "; it is now ", input.now])

# --- elapsedTime: now against the reference instant + a duration ---------------------------

# reference is what elapsedTime counts from: the first use when there was one, otherwise the
# agreement; before an agreement exists nothing has elapsed.
reference := {"ns": ns, "what": "first use", "at": input.usage.first_use} if {
	ns := util.parse_time(input.usage.first_use)
} else := {"ns": ns, "what": "the agreement", "at": input.usage.agreed_at} if {
	ns := util.parse_time(input.usage.agreed_at)
} else := {"ns": util.now_ns, "what": "now (no agreement yet)", "at": input.now}

_evaluate("elapsedTime", _, r) := util.fail(util.cat(["invalid ISO 8601 duration ", util.quoted(r), " for elapsedTime (expected e.g. P30D or PT2H)"])) if {
	not util.parse_duration(r)
}

_evaluate("elapsedTime", op, r) := util.result(ok, text) if {
	d := util.parse_duration(r)
	ends := util.add_duration(reference.ns, d)
	ok := _ok(op, util.now_ns, ends)
	text := _elapsed_text(ok, op, util.describe_span(util.non_negative(util.now_ns - reference.ns)), d, r, util.format_time(ends))
}

# expiry(c) is the instant (ns) after which an upper-bound time constraint no longer holds.
expiry(c) := util.parse_time(c.rightOperand) if {
	c.leftOperand == "dateTime"
	c.operator in {"lt", "lteq"}
}

expiry(c) := util.add_duration(reference.ns, util.parse_duration(c.rightOperand)) if {
	c.leftOperand == "elapsedTime"
	c.operator in {"lt", "lteq"}
}

_elapsed_text(true, op, span, d, r, _) := util.cat([span, " since ", reference.what, ", within ", util.describe_duration(d), " (", r, ")"]) if {
	op in {"lt", "lteq"}
}

_elapsed_text(true, op, span, d, r, _) := util.cat([span, " since ", reference.what, ", more than ", util.describe_duration(d), " (", r, ")"]) if {
	op in {"gt", "gteq"}
}

_elapsed_text(false, op, span, d, r, until) := util.cat([
	span, " have elapsed since ", reference.what, " (", reference.at, "); use is permitted for ",
	util.describe_duration(d), " (", r, "), until ", until,
]) if {
	op in {"lt", "lteq"}
}

_elapsed_text(false, op, span, d, r, from) := util.cat([
	"only ", span, " have elapsed since ", reference.what, " (", reference.at, "); use is permitted after ",
	util.describe_duration(d), " (", r, "), from ", from,
]) if {
	op in {"gt", "gteq"}
}
