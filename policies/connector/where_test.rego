package connector.where_test

import data.connector.where

_declared(j) := {"request": {"jurisdiction": j}, "consumer": {"credentials": {"region": "US"}}}

_region(j) := {"request": {}, "consumer": {"credentials": {"region": j}}}

_spatial(op, r) := {"leftOperand": "spatial", "operator": op, "rightOperand": r}

test_declared_jurisdiction_takes_precedence if {
	r := where.evaluate(_spatial("isAnyOf", ["EU"])) with input as _declared("EU")
	r.ok
	r.text == "jurisdiction 'EU' (declared jurisdiction) is within EU"
}

test_region_credential_when_nothing_declared if {
	r := where.evaluate(_spatial("isAnyOf", ["EU"])) with input as _region("CN")
	not r.ok
	r.text == "jurisdiction 'CN' (region credential) is not among the allowed jurisdictions: EU"
}

test_member_state_is_part_of_eu if {
	where.evaluate(_spatial("isAnyOf", ["EU"])).ok with input as _declared("de")
	where.evaluate(_spatial("isPartOf", "EEA")).ok with input as _declared("NO")
	not where.evaluate(_spatial("isPartOf", "EU")).ok with input as _declared("NO")
}

test_eq_compares_codes_only if {
	where.evaluate(_spatial("eq", "CN")).ok with input as _declared("cn")
	r := where.evaluate(_spatial("eq", "EU")) with input as _declared("DE")
	not r.ok
	r.text == "jurisdiction 'DE' (declared jurisdiction) is not the allowed jurisdiction 'EU'"
}

test_cross_border_exclusion if {
	c := _spatial("isNoneOf", ["US", "EU"])
	where.evaluate(c).ok with input as _declared("CN")
	r := where.evaluate(c) with input as _declared("FR")
	not r.ok
	r.text == "jurisdiction 'FR' (declared jurisdiction) is among the excluded jurisdictions: US, EU"
	where.evaluate(_spatial("neq", "US")).ok with input as _declared("CN")
}

test_unknown_jurisdiction if {
	r := where.evaluate(_spatial("isAnyOf", ["EU"])) with input as {"consumer": {"credentials": {}}}
	not r.ok
	r.text == "the consumer's jurisdiction is unknown (no declared jurisdiction and no region credential)"
}

test_bad_operand if {
	r := where.evaluate(_spatial("isAnyOf", [1])) with input as _declared("EU")
	not r.ok
	r.text == "spatial takes jurisdiction codes, got '[1]'"
}

test_unsupported_operator if {
	r := where.evaluate(_spatial("gt", "EU")) with input as _declared("EU")
	r.text == "operator 'gt' is not supported for leftOperand 'spatial'"
}
