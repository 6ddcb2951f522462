# Deletion after use: an ODRL `delete` duty becomes an obligation with a resolved deadline.
#   {"leftOperand": "delayPeriod", "operator": "eq", "rightOperand": "PT2S"}  -> now + 2 s
#   {"leftOperand": "dateTime", "operator": "lteq", "rightOperand": "2026-12-31T00:00:00Z"}
# With both, the earlier deadline applies; with neither, the data is deleted right after use
# (deadline = now).
package connector.deletion

import data.connector.util

operands := {"delayPeriod", "dateTime"}

_operators := {"delayPeriod": {"eq"}, "dateTime": {"eq", "lteq", "lt"}}

_constraints(duty) := cs if {
	cs := duty.constraints
	is_array(cs)
} else := []

# errors(duty) lists why a delete duty cannot be honoured: terms it does not take, malformed
# values, or a fixed deadline that has already passed.
errors(duty) := [e | some c in _constraints(duty); some e in _constraint_errors(c)]

_constraint_errors(c) := ["logical constraints are not supported in a delete duty"] if {
	not is_string(object.get(c, "leftOperand", null))
} else := [util.cat(["leftOperand ", util.quoted(c.leftOperand), " is not supported in a delete duty (use delayPeriod or dateTime)"])] if {
	not c.leftOperand in operands
} else := [util.cat(["malformed constraint on ", c.leftOperand, " in a delete duty: operator missing"])] if {
	object.get(c, "operator", null) == null
} else := [util.cat(["operator ", util.quoted(c.operator), " is not supported for ", c.leftOperand, " in a delete duty"])] if {
	not c.operator in _operators[c.leftOperand]
} else := [util.cat(["malformed constraint on ", c.leftOperand, " in a delete duty: rightOperand missing"])] if {
	not "rightOperand" in object.keys(c)
} else := [util.cat(["invalid ISO 8601 duration ", util.quoted(c.rightOperand), " for delayPeriod in a delete duty"])] if {
	c.leftOperand == "delayPeriod"
	not util.parse_duration(c.rightOperand)
} else := [util.cat(["invalid dateTime ", util.quoted(c.rightOperand), " in a delete duty"])] if {
	c.leftOperand == "dateTime"
	not util.parse_time(c.rightOperand)
} else := [util.cat(["the deletion deadline ", c.rightOperand, " has passed (it is now ", input.now, "); the data must already have been deleted"])] if {
	c.leftOperand == "dateTime"
	util.parse_time(c.rightOperand) < util.now_ns
} else := []

_deadlines(duty) := array.concat(
	[ns |
		some c in _constraints(duty)
		c.leftOperand == "delayPeriod"
		ns := util.add_duration(util.now_ns, util.parse_duration(c.rightOperand))
	],
	[ns |
		some c in _constraints(duty)
		c.leftOperand == "dateTime"
		ns := util.parse_time(c.rightOperand)
	],
)

# deadline_ns(duty) is the instant by which the data must be deleted.
deadline_ns(duty) := _earliest(_deadlines(duty))

_earliest(ns) := util.smallest(ns) if count(ns) > 0

else := util.now_ns

# obligation(duty) is the obligation the connector enforces: {"action": "delete", "deadline"}.
obligation(duty) := {"action": "delete", "deadline": util.format_time(deadline_ns(duty))}

# --- overdue deletions: what they block (the operator's setting) --------------------------
# The provider tells the policy, at phase transfer, which of this consumer's deletions are
# overdue (input.usage.overdue_deletions, the first 20; filled by the connector unless
# deletion_overdue_blocks_transfers = false):
#   [{"transfer": "urn:...", "agreement": "urn:...", "dataset": "ds-1",
#     "deadline": "2026-12-01T10:00:00Z", "settled": false}]
# `settled` is true once the provider terminated that agreement: the duty stays on record
# (a late receipt still fulfils it) but blocks nothing any more.
#
# overdue_scope says which new transfers an unsettled overdue deletion refuses:
#   "agreement" (default)  those under the same agreement
#   "consumer"             every transfer of that consumer
#   "none"                 none (the overdue alert only)
# An operator sets it in a module of its own, e.g. policies/local/settings.rego:
#   package local.settings
#   overdue_scope := "consumer"
scopes := {"agreement", "consumer", "none"}

default overdue_scope := "agreement"

overdue_scope := s if {
	s := data.local.settings.overdue_scope
	s in scopes
}

_overdue := ds if {
	ds := input.usage.overdue_deletions
	is_array(ds)
} else := []

# blocking is the overdue deletions that refuse this transfer request.
blocking := [d |
	some d in _overdue
	is_object(d)
	not object.get(d, "settled", false) == true
	_in_scope(overdue_scope, d)
]

_in_scope("consumer", _)

_in_scope("agreement", d) if d.agreement == object.get(input, ["request", "agreement"], null)

# overdue_reasons: one sentence per blocking deletion, at phase transfer only (a stream under
# way is not cut; the next transfer is refused).
overdue_reasons := [] if {
	input.phase != "transfer"
} else := [_overdue_text(d) | some d in blocking]

_overdue_text(d) := util.cat([
	"the consumer has an overdue deletion: the copy of ", util.text(object.get(d, "dataset", "?")),
	" delivered in transfer ", util.text(object.get(d, "transfer", "?")), " (agreement ",
	util.text(object.get(d, "agreement", "?")), ") was due for deletion by ",
	util.text(object.get(d, "deadline", "?")), " and no receipt has arrived",
	_scope_text(overdue_scope),
])

_scope_text("agreement") := "; new transfers under this agreement wait for the receipt"

_scope_text("consumer") := "; new transfers of this consumer wait for the receipt"
