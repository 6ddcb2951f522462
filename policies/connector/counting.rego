# Count: number of transfers (`count`) and number of uses (`tdsc:useCount`) under an agreement.
# The transfer being decided counts at phase transfer, the use being decided at phase use.
package connector.counting

import data.connector.util

operands := {"count", "tdsc:useCount"}

operators := {"lteq", "lt"}

_kind := {
	"count": {"field": "transfers", "phase": "transfer", "noun": "transfer"},
	"tdsc:useCount": {"field": "uses", "phase": "use", "noun": "use"},
}

# so_far(operand) is the number the constraint compares: usage.transfers (+1 at phase
# transfer) for `count`, usage.uses (+1 at phase use) for `tdsc:useCount`.
so_far(operand) := _used(operand) + _this(operand)

_used(operand) := n if {
	n := input.usage[_kind[operand].field]
	is_number(n)
} else := 0

_this(operand) := 1 if input.phase == _kind[operand].phase

else := 0

# the largest count the constraint allows
max_allowed(c) := floor(c.rightOperand) if c.operator == "lteq"

max_allowed(c) := ceil(c.rightOperand) - 1 if c.operator == "lt"

# evaluate(c) is {"ok", "text"} for an atomic constraint on `count` or `tdsc:useCount`.
evaluate(c) := util.unsupported(c) if {
	not c.operator in operators
} else := util.fail(util.cat(["limit for ", c.leftOperand, " must be a non-negative number, got ", util.quoted(c.rightOperand)])) if {
	not is_number(c.rightOperand)
} else := util.fail(util.cat(["limit for ", c.leftOperand, " must be a non-negative number, got ", util.quoted(c.rightOperand)])) if {
	c.rightOperand < 0
} else := r if {
	n := so_far(c.leftOperand)
	noun := _kind[c.leftOperand].noun
	r := _result(n <= max_allowed(c), c.leftOperand, n, max_allowed(c), noun)
}

_result(true, operand, n, allowed, noun) := util.result(true, util.cat([noun, " ", util.number_text(n), " of at most ", util.number_text(allowed)])) if {
	_this(operand) == 1
}

_result(true, operand, n, allowed, noun) := util.result(true, util.cat([util.plural(n, noun), " so far, at most ", util.number_text(allowed)])) if {
	_this(operand) == 0
}

_result(false, operand, n, allowed, noun) := util.fail(util.cat([
	"this would be ", noun, " ", util.number_text(n), ", but the agreement allows at most ",
	util.plural(allowed, noun),
])) if {
	_this(operand) == 1
}

_result(false, operand, n, allowed, noun) := util.fail(util.cat([
	util.plural(n, noun), " already made; the agreement allows at most ",
	util.plural(allowed, noun),
])) if {
	_this(operand) == 0
}

# remaining(c) is {"transfers": n} or {"uses": n}: how many more the agreement allows after
# the one being decided (never negative).
remaining(c) := {_kind[c.leftOperand].field: util.non_negative(max_allowed(c) - so_far(c.leftOperand))} if {
	c.leftOperand in operands
	c.operator in operators
	is_number(c.rightOperand)
	c.rightOperand >= 0
}
