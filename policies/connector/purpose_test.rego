package connector.purpose_test

import data.connector.purpose

_req(p) := {"phase": "negotiation", "request": {"purpose": p}}

test_is_any_of_permitted if {
	r := purpose.evaluate({"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research", "education"]}) with input as _req("research")
	r.ok
	r.text == "purpose 'research' is one of research, education"
}

test_is_any_of_denied_reason if {
	r := purpose.evaluate({"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]}) with input as _req("marketing")
	not r.ok
	r.text == "purpose 'marketing' is not among the permitted purposes: research"
}

test_eq if {
	c := {"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"}
	purpose.evaluate(c).ok with input as _req("research")
	r := purpose.evaluate(c) with input as _req("ads")
	not r.ok
	r.text == "purpose 'ads' is not the permitted purpose 'research'"
}

test_is_none_of_prohibited_purposes if {
	c := {"leftOperand": "purpose", "operator": "isNoneOf", "rightOperand": ["marketing", "profiling"]}
	purpose.evaluate(c).ok with input as _req("research")
	r := purpose.evaluate(c) with input as _req("profiling")
	not r.ok
	r.text == "purpose 'profiling' is among the excluded purposes: marketing, profiling"
}

test_neq if {
	c := {"leftOperand": "purpose", "operator": "neq", "rightOperand": "marketing"}
	purpose.evaluate(c).ok with input as _req("research")
	not purpose.evaluate(c).ok with input as _req("marketing")
}

test_is_part_of_single_value if {
	c := {"leftOperand": "purpose", "operator": "isPartOf", "rightOperand": "research"}
	purpose.evaluate(c).ok with input as _req("research")
}

test_undeclared_purpose_fails if {
	r := purpose.evaluate({"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]}) with input as {"phase": "transfer", "request": {}}
	not r.ok
	r.text == "no purpose declared; permitted purposes: research"
}

test_empty_purpose_fails if {
	r := purpose.evaluate({"leftOperand": "purpose", "operator": "isNoneOf", "rightOperand": ["marketing"]}) with input as _req("")
	not r.ok
	r.text == "no purpose declared (a purpose other than marketing is required)"
}

test_undeclared_purpose_deferred_at_catalog if {
	r := purpose.evaluate({"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]}) with input as {"phase": "catalog", "request": {}}
	r.ok
	r.deferred
}

test_declared_purpose_checked_at_catalog if {
	r := purpose.evaluate({"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]}) with input as {"phase": "catalog", "request": {"purpose": "ads"}}
	not r.ok
}

test_unsupported_operator if {
	r := purpose.evaluate({"leftOperand": "purpose", "operator": "gt", "rightOperand": "research"}) with input as _req("research")
	not r.ok
	r.text == "operator 'gt' is not supported for leftOperand 'purpose'"
}
