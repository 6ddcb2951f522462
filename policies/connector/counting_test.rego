package connector.counting_test

import data.connector.counting

_transfers(op, n) := {"leftOperand": "count", "operator": op, "rightOperand": n}

_uses(op, n) := {"leftOperand": "tdsc:useCount", "operator": op, "rightOperand": n}

test_third_of_three_transfers_allowed if {
	r := counting.evaluate(_transfers("lteq", 3)) with input as {"phase": "transfer", "usage": {"transfers": 2}}
	r.ok
	r.text == "transfer 3 of at most 3"
}

test_fourth_of_three_transfers_denied if {
	r := counting.evaluate(_transfers("lteq", 3)) with input as {"phase": "transfer", "usage": {"transfers": 3}}
	not r.ok
	r.text == "this would be transfer 4, but the agreement allows at most 3 transfers"
}

test_lt_allows_one_less if {
	r := counting.evaluate(_transfers("lt", 2)) with input as {"phase": "transfer", "usage": {"transfers": 1}}
	not r.ok
	r.text == "this would be transfer 2, but the agreement allows at most 1 transfer"
}

test_transfers_not_counted_outside_transfer_phase if {
	counting.evaluate(_transfers("lteq", 3)).ok with input as {"phase": "negotiation", "usage": {"transfers": 3}}
	r := counting.evaluate(_transfers("lteq", 3)) with input as {"phase": "stream", "usage": {"transfers": 4}}
	not r.ok
	r.text == "4 transfers already made; the agreement allows at most 3 transfers"
}

test_uses if {
	counting.evaluate(_uses("lteq", 5)).ok with input as {"phase": "use", "usage": {"uses": 4}}
	r := counting.evaluate(_uses("lteq", 5)) with input as {"phase": "use", "usage": {"uses": 5}}
	not r.ok
	r.text == "this would be use 6, but the agreement allows at most 5 uses"
}

test_uses_not_counted_at_transfer if {
	counting.evaluate(_uses("lteq", 5)).ok with input as {"phase": "transfer", "usage": {"uses": 5}}
}

test_missing_usage_is_zero if {
	counting.evaluate(_transfers("lteq", 1)).ok with input as {"phase": "transfer"}
}

test_invalid_limit if {
	r := counting.evaluate(_transfers("lteq", "three")) with input as {"phase": "transfer"}
	r.text == "limit for count must be a non-negative number, got 'three'"
	r2 := counting.evaluate(_transfers("lteq", -1)) with input as {"phase": "transfer"}
	not r2.ok
}

test_unsupported_operator if {
	r := counting.evaluate(_transfers("gteq", 1)) with input as {"phase": "transfer"}
	r.text == "operator 'gteq' is not supported for leftOperand 'count'"
}

test_remaining if {
	counting.remaining(_transfers("lteq", 3)) == {"transfers": 1} with input as {"phase": "transfer", "usage": {"transfers": 1}}
	counting.remaining(_transfers("lteq", 3)) == {"transfers": 2} with input as {"phase": "negotiation", "usage": {"transfers": 1}}
	counting.remaining(_transfers("lteq", 3)) == {"transfers": 0} with input as {"phase": "stream", "usage": {"transfers": 9}}
	counting.remaining(_uses("lt", 10)) == {"uses": 5} with input as {"phase": "use", "usage": {"uses": 3}}
}
