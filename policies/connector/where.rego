# Where: the consumer's jurisdiction against a `spatial` constraint, for cross-border rules.
# The jurisdiction is request.jurisdiction when the consumer declares one, otherwise the region
# claim of its verified credentials. Codes compare case-insensitively; isAnyOf, isPartOf and
# isNoneOf also accept the groups below ("EU" contains "DE"), eq and neq compare codes only.
package connector.where

import data.connector.util

operands := {"spatial"}

operators := {"eq", "neq", "isAnyOf", "isPartOf", "isNoneOf"}

# ISO 3166-1 alpha-2 codes of the groups a spatial constraint may name.
groups := {
	"EU": {
		"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
		"IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
	},
	"EEA": {
		"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
		"IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
		"IS", "LI", "NO",
	},
}

jurisdiction := {"code": upper(j), "source": "declared jurisdiction"} if {
	j := input.request.jurisdiction
	is_string(j)
	j != ""
} else := {"code": upper(j), "source": "region credential"} if {
	j := input.consumer.credentials.region
	is_string(j)
	j != ""
}

# within(code, area): code is area itself or a member of the group area.
within(code, area) if code == upper(area)

within(code, area) if code in groups[upper(area)]

_ok(op, j, r) if {
	op == "eq"
	j == upper(r)
} else if {
	op == "neq"
	j != upper(r)
} else if {
	op in {"isAnyOf", "isPartOf"}
	some area in util.as_list(r)
	within(j, area)
} else if {
	op == "isNoneOf"
	not _in_any(j, r)
} else := false

_in_any(j, r) if {
	some area in util.as_list(r)
	within(j, area)
}

# evaluate(c) is {"ok", "text"} for an atomic constraint on `spatial`.
evaluate(c) := util.unsupported(c) if {
	not c.operator in operators
} else := util.fail("the consumer's jurisdiction is unknown (no declared jurisdiction and no region credential)") if {
	not jurisdiction
} else := util.fail(util.cat(["spatial takes jurisdiction codes, got ", util.quoted(c.rightOperand)])) if {
	some x in util.as_list(c.rightOperand)
	not is_string(x)
} else := util.result(ok, _text(ok, c.operator, c.rightOperand)) if {
	ok := _ok(c.operator, jurisdiction.code, c.rightOperand)
}

_subject := util.cat(["jurisdiction ", util.quoted(jurisdiction.code), " (", jurisdiction.source, ")"])

_text(true, op, r) := util.cat([_subject, " is within ", util.join(r)]) if op in {"eq", "isAnyOf", "isPartOf"}

_text(true, op, r) := util.cat([_subject, " is outside ", util.join(r)]) if op in {"neq", "isNoneOf"}

_text(false, "eq", r) := util.cat([_subject, " is not the allowed jurisdiction ", util.quoted(r)])

_text(false, op, r) := util.cat([_subject, " is not among the allowed jurisdictions: ", util.join(r)]) if op in {"isAnyOf", "isPartOf"}

_text(false, op, r) := util.cat([_subject, " is among the excluded jurisdictions: ", util.join(r)]) if op in {"neq", "isNoneOf"}
