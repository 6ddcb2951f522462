package connector.metering_test

import data.connector.metering

_w(seq, why) := {"seq": seq, "transfer": "urn:t", "why": why}

test_no_disputed_windows_no_reason if {
	count(metering.reasons) == 0 with input as {"phase": "transfer", "usage": {"disputed_windows": [], "max_disputed_windows": 0}}
}

test_facts_absent_no_reason if {
	count(metering.reasons) == 0 with input as {"phase": "transfer", "usage": {}}
}

test_one_window_over_a_threshold_of_zero if {
	r := metering.reasons with input as {"phase": "transfer", "usage": {"disputed_windows": [_w(1, "no receipt")], "max_disputed_windows": 0}}
	r == ["metering window record 1 (no receipt) of this agreement is disputed (refused by the consumer or without its receipt past the deadline); at most 0 disputed windows allowed before new transfers: send the receipts first"]
}

test_windows_named if {
	r := metering.reasons with input as {"phase": "transfer", "usage": {"disputed_windows": [_w(1, "no receipt"), _w(4, "refused")], "max_disputed_windows": 1}}
	r == ["metering windows record 1 (no receipt), record 4 (refused) of this agreement are disputed (refused by the consumer or without its receipt past the deadline); at most 1 disputed window allowed before new transfers: send the receipts first"]
}

test_within_the_threshold if {
	count(metering.reasons) == 0 with input as {"phase": "transfer", "usage": {"disputed_windows": [_w(1, "refused"), _w(2, "refused")], "max_disputed_windows": 2}}
}

test_only_at_phase_transfer if {
	count(metering.reasons) == 0 with input as {"phase": "stream", "usage": {"disputed_windows": [_w(1, "refused")], "max_disputed_windows": 0}}
	count(metering.reasons) == 0 with input as {"phase": "negotiation", "usage": {"disputed_windows": [_w(1, "refused")], "max_disputed_windows": 0}}
}

test_only_the_first_are_named_the_count_decides if {
	r := metering.reasons with input as {"phase": "transfer", "usage": {"disputed_windows": [_w(1, "no receipt")], "disputed_window_count": 40, "max_disputed_windows": 5}}
	r == ["metering windows record 1 (no receipt) and 39 more of this agreement are disputed (refused by the consumer or without its receipt past the deadline); at most 5 disputed windows allowed before new transfers: send the receipts first"]
	count(metering.reasons) == 0 with input as {"phase": "transfer", "usage": {"disputed_windows": [_w(1, "no receipt")], "disputed_window_count": 5, "max_disputed_windows": 5}}
}
