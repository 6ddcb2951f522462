# Data classification (China's data grading: general / important / core data).
#   core       never allowed for a consumer other than the dataset's owner, at every phase
#              (so the catalog hides it).
#   important  needs a declared purpose (checked from negotiation on: browsing the catalog
#              declares none), an allowed jurisdiction (a spatial constraint must exist and
#              hold) and a log duty in the policy.
#   general    follows its offer.
package connector.classification

import data.connector.util

levels := {"general", "important", "core"}

# level is the dataset's classification; a dataset without one is general data.
level := l if {
	l := input.dataset.classification
	l != null
} else := "general"

owner := o if {
	o := input.dataset.owner
	is_string(o)
	o != ""
} else := o if {
	o := input.provider.id
	is_string(o)
	o != ""
} else := "(unknown)"

# reasons lists the denials that hold whatever the policy says.
reasons := [util.cat(["unknown data classification ", util.quoted(level), " (expected general, important or core)"])] if {
	not level in levels
} else := [util.cat([
	"dataset ", util.text(object.get(input, ["dataset", "id"], "(unnamed)")),
	" is core data and is never offered outside its owner ", util.text(owner),
])] if {
	level == "core"
	not _is_owner
} else := []

_is_owner if {
	input.consumer.id == owner
	owner != "(unknown)"
}

# permission_reasons(p) lists what permission p lacks for the dataset's classification.
permission_reasons(p) := [] if {
	level != "important"
} else := [r | some check in _important_checks(p); not check.ok; r := check.reason]

_important_checks(p) := [
	{
		"ok": _purpose_declared,
		"reason": "important data needs a declared purpose; the request declares none",
	},
	{
		"ok": _has_spatial(p),
		"reason": "important data needs an allowed jurisdiction; the offer has no spatial constraint",
	},
	{
		"ok": _has_log_duty(p),
		"reason": "important data needs a log duty; the policy has none",
	},
]

_purpose_declared if {
	input.phase == "catalog"
} else if {
	is_string(input.request.purpose)
	input.request.purpose != ""
} else := false

# a spatial constraint that must hold: not inside an or / xone alternative
_has_spatial(p) if {
	walk(object.get(p, "constraints", []), [path, v])
	is_object(v)
	v.leftOperand == "spatial"
	not _under_alternative(path)
} else := false

_under_alternative(path) if {
	some k in path
	k in {"or", "xone"}
}

_has_log_duty(p) if {
	some d in object.get(p, "duties", [])
	d.action == "log"
} else if {
	some d in object.get(input, ["policy", "obligations"], [])
	d.action == "log"
} else := false
