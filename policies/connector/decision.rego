# The decision the connector asks at every enforcement point (docs/policy-contract.md):
#   data.connector.decision.decision == {"allow", "reasons", "obligations", "limits"}
package connector.decision

import data.connector.classification
import data.connector.counting
import data.connector.deletion
import data.connector.metering
import data.connector.operator
import data.connector.rules
import data.connector.util
import data.connector.volume

phases := {"catalog", "negotiation", "transfer", "stream", "use"}

decision := {
	"allow": allow,
	"reasons": reasons,
	"obligations": obligations,
	"limits": limits,
}

# allow: a permission allows, no prohibition matches, no classification rule denies, and the
# policy uses no term outside the profile.
default allow := false

allow if {
	count(reasons) == 0
	_allowing_index
}

# --- reasons: one sentence per failed check ---------------------------------------------

# A failure inside the library denies too: reasons then falls back to this default.
default reasons := ["the policy library could not evaluate this input"]

reasons := _unique(array.concat(
	array.concat(array.concat(_input_reasons, classification.reasons), operator.reasons),
	array.concat(array.concat(rules.unknown_terms, _prohibition_reasons), _permission_reasons),
))

_input_reasons := array.concat(
	[util.cat(["unknown phase ", util.quoted(object.get(input, "phase", null)), " (expected catalog, negotiation, transfer, stream or use)"]) |
		not object.get(input, "phase", null) in phases
	],
	array.concat(
		["the decision input has no valid 'now' time stamp" | not util.now_ns],
		array.concat(metering.reasons, deletion.overdue_reasons),
	),
)

_prohibition_reasons := [r | some p in rules.prohibitions; r := rules.prohibition_reason(p)]

# reasons per permission; only reported when no permission allows
_failures := [_reasons_of(p) | some p in rules.permissions]

_reasons_of(p) := r if {
	r := rules.permission_reasons(p)
} else := ["the permission could not be evaluated"]

_allowing_indexes := {i | some i; f := _failures[i]; count(f) == 0}

_allowing_index := util.smallest(_allowing_indexes)

_permission_reasons := [] if {
	_allowing_index
} else := ["the policy grants no permission"] if {
	count(rules.permissions) == 0
} else := [r | some r in _failures[0]] if {
	count(rules.permissions) == 1
} else := [text |
	some i
	some r in _failures[i]
	not r in rules.unknown_terms
	text := util.cat(["permission ", util.number_text(i + 1), ": ", r])
]

# the first occurrence of each reason, in order
_unique(xs) := [x | some i; x := xs[i]; not x in array.slice(xs, 0, i)]

# --- obligations: every duty of the permission that allowed, and the policy's own ---------

default obligations := []

obligations := array.concat(
	[rules.obligation(d) | some d in rules.duties_of(_allowing)],
	[rules.obligation(d) | some d in rules.policy_obligations],
) if {
	allow
}

_allowing := rules.permissions[_allowing_index]

# --- limits: what the data plane enforces without asking again ----------------------------

default limits := {"bytes_remaining": null, "records_remaining": null, "transfers_remaining": null}

limits := {
	"bytes_remaining": _smallest("bytes"),
	"records_remaining": _smallest("records"),
	"transfers_remaining": _smallest("transfers"),
} if {
	allow
}

_remaining := array.concat(
	[r | some c in rules.holding(_allowing); r := volume.remaining(c)],
	[r | some c in rules.holding(_allowing); r := counting.remaining(c)],
)

# (object.get, not r[key]: rego-cpp 1.5 does not bind a function argument used as a key
# inside a comprehension)
_smallest(key) := util.smallest(values) if {
	values := {v | some r in _remaining; v := object.get(r, key, null); v != null}
	count(values) > 0
} else := null
